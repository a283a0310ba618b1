#!/usr/bin/env bash
# Builds Baton's release artefacts from this checkout into dist/:
#
#   dist/baton_<version>_amd64.deb              /usr/bin/baton (static, stripped), completions,
#                                               the systemd template unit baton@.service
#   dist/baton-<version>-linux-x86_64.tar.gz    the same files, plus the demo server hello
#   dist/baton-<version>-linux-x86_64-debug.tar.gz   debug info of both binaries (gnu-debuglink)
#   dist/SHA256SUMS
#
#   bash Packaging/build.sh
#
# The binaries are `swift build -c release --static-swift-stdlib` (Packaging/swift-build-static.sh,
# which links libstdc++ in too): the Swift runtime, Foundation
# and Dispatch are linked in, glibc stays dynamic, so a server needs nothing but glibc (the
# version is printed at the end and written into the package's Depends). The version comes from
# Sources/Baton/Version.swift (BatonVersion.string), the one source of truth; `baton --version`
# prints the same. Idempotent: each run rebuilds dist/'s files from scratch (the Swift build
# itself is incremental, in .build-static/). Needs swift, binutils, dpkg-dev; lintian is run
# when installed.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

say() { printf '==> %s\n' "$*" >&2; }
die() { printf 'error: %s\n' "$*" >&2; exit 1; }

for tool in swift objcopy strip objdump dpkg-deb dpkg-shlibdeps gzip tar sha256sum; do
    command -v "$tool" >/dev/null || die "$tool not found (apt-get install binutils dpkg-dev; swift from swift.org)"
done

version=$(sed -n 's/^ *public static let string = "\([^"]*\)".*/\1/p' Sources/Baton/Version.swift)
[[ $version =~ ^[0-9]+\.[0-9]+\.[0-9]+([~+.][0-9A-Za-z.~+]*)?$ ]] || die "cannot read a version from Sources/Baton/Version.swift (got '$version')"
arch=amd64
[ "$(uname -m)" = x86_64 ] || die "only x86_64 is packaged (this is $(uname -m))"

# 1. Static release build (Swift runtime, Foundation, Dispatch, libstdc++ linked in).
say "static release build (Packaging/swift-build-static.sh)"
bin=$(bash Packaging/swift-build-static.sh hello baton)

for name in baton hello; do
    if ldd "$bin/$name" | grep -E 'libswift|libFoundation|libdispatch|/opt/swift' >&2; then
        die "$bin/$name still loads Swift libraries dynamically"
    fi
done

# 2. Stripped binaries; the debug info goes into separate files that gdb finds by debuglink.
dist=$root/dist
work=$root/.build-package
rm -rf "$work"
mkdir -p "$dist" "$work/bin" "$work/debug"
rm -f "$dist"/baton_*_"$arch".deb "$dist"/baton-*-linux-x86_64*.tar.gz "$dist"/SHA256SUMS "$dist"/lintian.txt
for name in baton hello; do
    cp "$bin/$name" "$work/bin/$name"
    objcopy --only-keep-debug "$work/bin/$name" "$work/debug/$name.debug"
    chmod 0644 "$work/debug/$name.debug"
    strip --strip-unneeded --remove-section=.comment --remove-section=.note "$work/bin/$name"
    (cd "$work/debug" && objcopy --add-gnu-debuglink="$name.debug" "$work/bin/$name")
    chmod 0755 "$work/bin/$name"
done
# Guards for what once regressed unnoticed (issue 19). (a) ICU's data (`icudt…_dat`, ~30 MB) must
# not be linked in: neither binary formats dates or collates text, and it came in once only
# because a dependency (swift-crypto 3.x) imported all of Foundation instead of
# FoundationEssentials, which drags in FoundationInternationalization and ICU. Checked in the
# symbols of the unstripped binary and in the strings of the stripped one. (b) A stripped binary
# may not grow past a ceiling without someone deciding so here: measured on 2026-12-03 after the
# swift-crypto 4.5.2 fix (Benchmarks/run.sh, memory section), hello 30.5 MB and baton
# 26.7 MB stripped; the ceilings (35 MB, 31 MB) leave about 15 % headroom. Before the fix: hello 128 MB
# as built, 74 MB stripped, with icudt76 (issue 19). hello grew to 37.6 MB on purpose with HTTP/2
# and TLS (dda1c5e, 2026-12-04: BoringSSL 2.5 MB of symbols, swift-nio-ssl 0.3 MB, swift-nio-http2
# and HPACK 0.9 MB, plus their unwind tables), which crossed its ceiling unnoticed until
# 2026-12-05: 43 MB is 37.6 MB plus the same 15 %.
declare -A max_stripped_bytes=([hello]=43000000 [baton]=31000000)
for name in baton hello; do
    # (process substitution, not a pipe: with pipefail, grep -q ending early would fail the pipe)
    if grep -q 'icudt[0-9]*_dat' < <(nm "$bin/$name" 2>/dev/null) || grep -q 'icudt[0-9][0-9]*' < <(strings -n 8 "$work/bin/$name"); then
        die "$name carries ICU data (icudt): a dependency imports Foundation instead of FoundationEssentials (look for 'import Foundation' without a canImport(FoundationEssentials) branch in .build-static/checkouts)"
    fi
    bytes=$(stat -c %s "$work/bin/$name")
    if ((bytes > max_stripped_bytes[$name])); then
        die "stripped $name is $bytes bytes, above its ceiling of ${max_stripped_bytes[$name]} (Packaging/build.sh): find what grew (size -A, nm --size-sort) or raise the ceiling with a reason"
    fi
    say "$name: $bytes bytes stripped (ceiling ${max_stripped_bytes[$name]}), no ICU data"
done
# Stripping must not break them.
out=$("$work/bin/baton" --version) || die "the stripped baton does not run"
[ "$out" = "$version" ] || die "baton --version says '$out', Version.swift says '$version'"
"$work/bin/hello" --help >/dev/null || die "the stripped hello does not run"

# 3. What the binaries need from the system: glibc, at the highest symbol version they use.
glibc=$(objdump -T "$work/bin/baton" "$work/bin/hello" | grep -o 'GLIBC_[0-9.]*' | sed 's/GLIBC_//' | sort -uV | tail -1)
needed=$(objdump -p "$work/bin/baton" "$work/bin/hello" | awk '/NEEDED/ {print $2}' | sort -u | tr '\n' ' ')
say "the binaries need: ${needed}(glibc >= $glibc)"

# 4. Completions, from swift-argument-parser.
mkdir -p "$work/completions"
# (bash completions are sourced, not run: no #! line, as lintian asks)
"$work/bin/baton" --generate-completion-script bash | sed '1{/^#!/d}' >"$work/completions/baton.bash"
"$work/bin/baton" --generate-completion-script zsh >"$work/completions/_baton"
"$work/bin/baton" --generate-completion-script fish >"$work/completions/baton.fish"

# 5. The Debian package tree: root-owned (dpkg-deb --root-owner-group), 0755 folders and
#    programs, 0644 files.
pkg=$work/deb
install -d -m 0755 "$pkg/DEBIAN" "$pkg/usr/bin" "$pkg/lib/systemd/system" "$pkg/usr/share/doc/baton" \
    "$pkg/usr/share/bash-completion/completions" "$pkg/usr/share/zsh/vendor-completions" \
    "$pkg/usr/share/fish/vendor_completions.d" "$pkg/usr/share/man/man1"
install -m 0755 "$work/bin/baton" "$pkg/usr/bin/baton"
install -m 0644 "$work/completions/baton.bash" "$pkg/usr/share/bash-completion/completions/baton"
install -m 0644 "$work/completions/_baton" "$pkg/usr/share/zsh/vendor-completions/_baton"
install -m 0644 "$work/completions/baton.fish" "$pkg/usr/share/fish/vendor_completions.d/baton.fish"
install -m 0644 deploy/systemd/baton@.service "$pkg/lib/systemd/system/baton@.service"
install -m 0644 README.md "$pkg/usr/share/doc/baton/README.md"
install -m 0644 deploy/systemd/README.md "$pkg/usr/share/doc/baton/systemd.md"
gzip -9n "$pkg/usr/share/doc/baton/README.md" "$pkg/usr/share/doc/baton/systemd.md"
install -m 0644 Packaging/debian/copyright "$pkg/usr/share/doc/baton/copyright"
# A native package (no Debian revision): its changelog is changelog.gz.
sed "s/@VERSION@/$version/g" Packaging/debian/changelog | gzip -9n >"$pkg/usr/share/doc/baton/changelog.gz"
chmod 0644 "$pkg/usr/share/doc/baton/changelog.gz"
# The manual page: the CLI's own --help, as roff.
bash Packaging/manpage.sh "$work/bin/baton" "$version" | gzip -9n >"$pkg/usr/share/man/man1/baton.1.gz"
chmod 0644 "$pkg/usr/share/man/man1/baton.1.gz"

# Depends: what dpkg-shlibdeps derives from the binary and the installed libraries' symbol files
# (it needs a debian/control to read, so it runs in a scratch source tree).
mkdir -p "$work/src/debian"
printf 'Source: baton\n\nPackage: baton\nArchitecture: %s\n' "$arch" >"$work/src/debian/control"
depends=$(cd "$work/src" && dpkg-shlibdeps -O "$pkg/usr/bin/baton" 2>/dev/null | sed -n 's/^shlibs:Depends=//p')
[ -n "$depends" ] || die "dpkg-shlibdeps found no dependencies for usr/bin/baton"
size=$(du -sk --exclude=DEBIAN "$pkg" | cut -f1)
sed -e "s/@VERSION@/$version/" -e "s/@ARCH@/$arch/" -e "s/@DEPENDS@/$depends/" -e "s/@SIZE@/$size/" \
    Packaging/debian/control >"$pkg/DEBIAN/control"
chmod 0644 "$pkg/DEBIAN/control"
install -m 0755 Packaging/debian/postinst Packaging/debian/postrm "$pkg/DEBIAN/"
(cd "$pkg" && find usr lib -type f -print0 | sort -z | xargs -0 md5sum) >"$pkg/DEBIAN/md5sums"
chmod 0644 "$pkg/DEBIAN/md5sums"

deb=$dist/baton_${version}_${arch}.deb
say "dpkg-deb --build $deb"
dpkg-deb --root-owner-group -Zxz --build "$pkg" "$deb" >/dev/null
dpkg-deb --info "$deb" | sed -n '/Package:/,$p' >&2

# 6. The release tarball: the same files in a folder, plus hello (the demo server) to try it.
name=baton-$version-linux-x86_64
tree=$work/$name
install -d -m 0755 "$tree/bin" "$tree/completions" "$tree/systemd"
install -m 0755 "$work/bin/baton" "$work/bin/hello" "$tree/bin/"
install -m 0644 "$work/completions/baton.bash" "$work/completions/_baton" "$work/completions/baton.fish" "$tree/completions/"
install -m 0644 deploy/systemd/baton@.service deploy/systemd/hello-sync-reload.service deploy/systemd/hello.service \
    deploy/systemd/hello.socket "$tree/systemd/"
install -m 0644 README.md "$tree/README.md"
install -m 0644 deploy/systemd/README.md "$tree/systemd/README.md"
install -m 0644 Packaging/debian/copyright "$tree/COPYRIGHT"
tar_flags=(--sort=name --owner=0 --group=0 --numeric-owner --mtime="@$(git log -1 --format=%ct 2>/dev/null || echo 0)")
tar "${tar_flags[@]}" -C "$work" -czf "$dist/$name.tar.gz" "$name"
mkdir -p "$work/$name-debug"
install -m 0644 "$work/debug/baton.debug" "$work/debug/hello.debug" "$work/$name-debug/"
tar "${tar_flags[@]}" -C "$work" -czf "$dist/$name-debug.tar.gz" "$name-debug"

(cd "$dist" && sha256sum "baton_${version}_${arch}.deb" "$name.tar.gz" "$name-debug.tar.gz" >SHA256SUMS)

# 7. lintian, where installed: its findings go to dist/lintian.txt (Packaging/README.md says
#    which remain and why).
if command -v lintian >/dev/null; then
    say "lintian $deb"
    lintian --info --tag-display-limit 0 "$deb" >"$dist/lintian.txt" 2>&1 || true
    if grep -qv 'running with root privileges' "$dist/lintian.txt"; then cat "$dist/lintian.txt" >&2; else say "lintian: no findings"; fi
else
    say "lintian not installed: skipped (apt-get install lintian)"
fi

say "sizes (bytes): static unstripped / stripped"
for b in baton hello; do
    printf '    %-6s %12s %12s\n' "$b" "$(stat -c %s "$bin/$b")" "$(stat -c %s "$work/bin/$b")" >&2
done
say "target server needs: Linux x86_64 with glibc >= $glibc (libraries: ${needed% })"
ls -l "$dist" >&2
