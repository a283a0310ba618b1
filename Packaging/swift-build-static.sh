#!/usr/bin/env bash
# The static release build that deploys upload, in one place (Packaging/build.sh and
# StaticBinaryTests use it):
#
#   bash Packaging/swift-build-static.sh hello baton     # prints the folder holding the binaries
#
# = swift build -c release --static-swift-stdlib --scratch-path .build-static, one product at a
# time (--product takes one: the last one given wins). The Swift runtime, Foundation and Dispatch
# are linked in. So is libstdc++: the toolchain's static-stdlib-args.lnk asks for -lstdc++, which
# ld takes from the first -L folder that has it, so a folder holding only libstdc++.a (GCC's,
# which the Swift toolchain needs installed anyway) makes it static. What stays dynamic is glibc
# (libc, libm, ld-linux) and libgcc_s, which glibc itself loads (pthread_cancel, backtrace):
# a server needs glibc and nothing else. Without GCC's libstdc++.a the build still works and the
# binaries need libstdc++6 as well (printed on standard error).
set -euo pipefail
cd "$(dirname "$0")/.."
[ $# -gt 0 ] || set -- hello baton
scratch=.build-static
flags=(-c release --static-swift-stdlib --scratch-path "$scratch")
cxx=$(gcc -print-file-name=libstdc++.a 2>/dev/null || true)
if [ -n "$cxx" ] && [ -f "$cxx" ]; then
    mkdir -p "$scratch/static-libstdc++"
    ln -sfn "$cxx" "$scratch/static-libstdc++/libstdc++.a"
    flags+=(-Xlinker -L"$(pwd)/$scratch/static-libstdc++")
else
    echo "warning: GCC's libstdc++.a not found (gcc -print-file-name=libstdc++.a): libstdc++ stays dynamic" >&2
fi
for product in "$@"; do
    echo "swift build ${flags[*]} --product $product" >&2
    swift build "${flags[@]}" --product "$product" >&2
done
swift build "${flags[@]}" --show-bin-path
