// h2client: an HTTP/2 load client for Benchmarks/protocols/h2-tls.sh that, unlike h2load, opens a new
// connection when the server sends GOAWAY (h2load never does: nghttp2/nghttp2#1197).
//
// -c slots, each with its own golang.org/x/net/http2 Transport (so one connection per slot at a
// time), and -m goroutines per slot sending GET -url in closed loops (-m concurrent streams on the
// slot's connection). http://… is h2c with prior knowledge (AllowHTTP, plain TCP dial);
// https://… is h2 over TLS (ALPN h2, certificate not verified: the benchmark's is throwaway).
// Builds offline in GOPATH mode against Debian's golang-golang-x-net-dev:
//
//	GO111MODULE=off GOPATH=/usr/share/gocode GOFLAGS= go build -o h2client .
//
// What counts:
//   - ok: a 2xx answer whose body was read completely; failed: anything else (an error from the
//     transport, a timeout, a body cut short, a non-2xx status), by kind, each logged to -fail-log.
//   - retries: attempts the Transport made again by itself (httptrace GotConn more than once for one
//     request). x/net retries a request without a body when the stream was refused
//     (REFUSED_STREAM), when the connection it picked could no longer take it, or when a GOAWAY's
//     last-stream-id says the stream was not processed (RFC 9113 §6.8: the server did nothing with
//     streams above it, so they are safe to retry on another connection). That is correct client
//     behaviour, so a retried request that then got its 2xx is ok, not failed; retries are counted
//     to show how often it happened (0 is what the two-step GOAWAY aims at).
//   - conns: connections opened (the dials); every GOAWAY-driven reconnect adds one.
//   - The frames the server sends are parsed passively on each connection (a tap on the connection's
//     reads, below x/net's framer): GOAWAY frames (last-stream-id, error code) and RST_STREAM.
//     x/net stops using a connection at the first GOAWAY and closes it itself as soon as its streams
//     are done, which can be before the server's second GOAWAY arrives; so per connection the end is
//     one of: client_close (after a GOAWAY: the normal case), server_eof (the server closed it; with
//     how many GOAWAYs before), error (a read error such as a reset), open (still open at the end).
//
// Each request carries a -timeout context. When -d is over no new request is started, the ones in
// flight are awaited, then every connection is closed (those are "open" at the end).
//
// -ready-file: the unix ms at which the measured period starts, written once every slot has had one
// answer (the ramp; its requests are counted too). -conn-log: one line per connection.
// Standard output: one line of key=value pairs (keys explained in h2-tls.sh's header).
package main

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"regexp"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

var start = time.Now()

func sinceMs() int64 { return time.Since(start).Milliseconds() }

// ---------------------------------------------------------------- connections and their frames

type goAway struct {
	last uint32
	code uint32
	atMs int64
}

// frameParser follows one direction of a connection frame by frame (9-byte header, then the
// payload), keeping the first 8 payload bytes of GOAWAY and RST_STREAM frames.
type frameParser struct {
	skip      int // bytes still to skip before the first frame (the client's 24-byte preface)
	hdr       [9]byte
	hdrN      int
	remaining uint32
	ftype     byte
	flags     byte
	stream    uint32
	payload   []byte
	onFrame   func(ftype, flags byte, stream uint32, payload []byte)
}

func (f *frameParser) feed(b []byte) {
	if f.skip > 0 {
		k := f.skip
		if k > len(b) {
			k = len(b)
		}
		f.skip -= k
		b = b[k:]
	}
	for len(b) > 0 {
		if f.hdrN < 9 {
			k := copy(f.hdr[f.hdrN:], b)
			f.hdrN += k
			b = b[k:]
			if f.hdrN == 9 {
				f.remaining = uint32(f.hdr[0])<<16 | uint32(f.hdr[1])<<8 | uint32(f.hdr[2])
				f.ftype, f.flags = f.hdr[3], f.hdr[4]
				f.stream = binary.BigEndian.Uint32(f.hdr[5:9]) & 0x7fffffff
				f.payload = f.payload[:0]
				if f.remaining == 0 {
					f.done()
				}
			}
			continue
		}
		k := int(f.remaining)
		if k > len(b) {
			k = len(b)
		}
		if (f.ftype == 0x7 || f.ftype == 0x3) && len(f.payload) < 8 {
			want := 8 - len(f.payload)
			if want > k {
				want = k
			}
			f.payload = append(f.payload, b[:want]...)
		}
		b = b[k:]
		f.remaining -= uint32(k)
		if f.remaining == 0 {
			f.done()
		}
	}
}

func (f *frameParser) done() {
	f.onFrame(f.ftype, f.flags, f.stream, f.payload)
	f.hdrN = 0
}

const (
	eventsBefore = 24 // frames kept before the first GOAWAY (a ring)
	eventsAfter  = 80 // frames kept from the first GOAWAY on
)

// tapConn passes everything through and parses the HTTP/2 frames both ways: the server's GOAWAY
// and RST_STREAM frames are counted, and the frames around the first GOAWAY are kept as a trace
// for the connection log.
type tapConn struct {
	net.Conn
	id     int64
	slot   int
	openMs int64

	mu           sync.Mutex
	in, out      frameParser
	goAways      []goAway
	rsts         []string // "stream/code@ms"
	before       []string // ring of the last eventsBefore frames before the first GOAWAY
	after        []string
	closedByUs   bool
	closedByUsMs int64
	end          string
	endMs        int64
}

var frameNames = map[byte]string{0: "DATA", 1: "HEADERS", 2: "PRIORITY", 3: "RST", 4: "SETTINGS", 5: "PUSH", 6: "PING", 7: "GOAWAY", 8: "WINDOW", 9: "CONT"}

func newTapConn(conn net.Conn, id int64, slot int) *tapConn {
	c := &tapConn{Conn: conn, id: id, slot: slot, openMs: sinceMs()}
	c.in.onFrame = func(t, fl byte, st uint32, p []byte) { c.frame("<", t, fl, st, p) }
	c.out.onFrame = func(t, fl byte, st uint32, p []byte) { c.frame(">", t, fl, st, p) }
	c.out.skip = 24
	return c
}

// frame: one frame; dir "<" from the server, ">" from the client. Called with c.mu held.
func (c *tapConn) frame(dir string, t, flags byte, stream uint32, p []byte) {
	now := sinceMs()
	name := frameNames[t]
	if name == "" {
		name = fmt.Sprintf("T%d", t)
	}
	ev := fmt.Sprintf("%s%s:%d", dir, name, stream)
	switch t {
	case 0x7:
		if len(p) >= 8 {
			last, code := binary.BigEndian.Uint32(p[0:4])&0x7fffffff, binary.BigEndian.Uint32(p[4:8])
			ev = fmt.Sprintf("%sGOAWAY:last=%d:%s", dir, last, http2.ErrCode(code))
			if dir == "<" {
				c.goAways = append(c.goAways, goAway{last: last, code: code, atMs: now})
			}
		}
	case 0x3:
		if len(p) >= 4 {
			code := http2.ErrCode(binary.BigEndian.Uint32(p[0:4]))
			ev = fmt.Sprintf("%sRST:%d:%s", dir, stream, code)
			if dir == "<" {
				c.rsts = append(c.rsts, fmt.Sprintf("%d/%s@%d", stream, code, now))
			}
		}
	case 0x6:
		if flags&0x1 != 0 {
			ev = dir + "PING_ACK"
		}
	case 0x4:
		if flags&0x1 != 0 {
			ev = dir + "SETTINGS_ACK"
		}
	}
	if flags&0x1 != 0 && (t == 0x0 || t == 0x1) {
		ev += ":END"
	}
	ev += fmt.Sprintf("@%d", now)
	if len(c.goAways) == 0 {
		c.before = append(c.before, ev)
		if len(c.before) > eventsBefore {
			c.before = c.before[1:]
		}
	} else if len(c.after) < eventsAfter {
		c.after = append(c.after, ev)
	}
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.mu.Lock()
	c.in.feed(p[:n])
	if err != nil && c.end == "" {
		c.endMs = sinceMs()
		switch {
		case c.closedByUs:
			c.end = "client_close"
		case errors.Is(err, io.EOF):
			c.end = "server_eof"
		default:
			c.end = "error:" + kindOf(err)
		}
		if len(c.goAways) > 0 && len(c.after) < eventsAfter {
			c.after = append(c.after, fmt.Sprintf("<END:%s@%d", c.end, c.endMs))
		}
	}
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.mu.Lock()
	c.out.feed(p[:n])
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) Close() error {
	c.mu.Lock()
	if !c.closedByUs {
		c.closedByUs, c.closedByUsMs = true, sinceMs()
		if len(c.goAways) > 0 && len(c.after) < eventsAfter {
			c.after = append(c.after, fmt.Sprintf(">CLOSE@%d", c.closedByUsMs))
		}
	}
	c.mu.Unlock()
	return c.Conn.Close()
}

// ---------------------------------------------------------------- failures

var nonWord = regexp.MustCompile(`[^a-z0-9]+`)

// kindOf: a short, stable name for an error, for the kinds=… tally.
func kindOf(err error) string {
	s := err.Error()
	var se http2.StreamError
	var ga http2.GoAwayError
	switch {
	case errors.Is(err, context.DeadlineExceeded) || strings.Contains(s, "deadline exceeded") || strings.Contains(s, "Client.Timeout"):
		return "timeout"
	case errors.As(err, &ga) || strings.Contains(s, "server sent GOAWAY and closed the connection"):
		return "goaway_then_closed"
	case errors.As(err, &se):
		return "stream_" + strings.ToLower(se.Code.String())
	case strings.Contains(s, "graceful shutdown GOAWAY"):
		return "goaway_not_retried"
	case strings.Contains(s, "connection refused"):
		return "connect_refused"
	case strings.Contains(s, "connection reset"):
		return "reset"
	case strings.Contains(s, "broken pipe"):
		return "broken_pipe"
	case strings.Contains(s, "unexpected EOF"):
		return "unexpected_eof"
	case errors.Is(err, io.EOF) || strings.HasSuffix(s, "EOF"):
		return "eof"
	case strings.Contains(s, "client conn is closed"):
		return "conn_closed"
	case strings.Contains(s, "tls:") || strings.Contains(s, "handshake"):
		return "tls"
	case strings.Contains(s, "use of closed network connection"):
		return "closed"
	}
	k := strings.Trim(nonWord.ReplaceAllString(strings.ToLower(s), "_"), "_")
	if len(k) > 40 {
		k = k[:40]
	}
	return "other_" + k
}

// ---------------------------------------------------------------- the load

type stats struct {
	ok, failed, retries int64
	kinds               map[string]int64
	pids                map[string]int64
	lat                 []uint32 // µs, ok requests
}

func main() {
	target := flag.String("url", "http://127.0.0.1:8080/hello", "http:// for h2c (prior knowledge), https:// for h2 over TLS (ALPN)")
	slots := flag.Int("c", 256, "connections (one x/net Transport each)")
	streams := flag.Int("m", 10, "concurrent streams (goroutines) per connection")
	dur := flag.Duration("d", 20*time.Second, "measured duration, after the ramp")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout (dial included)")
	rampTimeout := flag.Duration("ramp-timeout", 60*time.Second, "give up when the ramp takes longer")
	readyFile := flag.String("ready-file", "", "write the unix ms at which the measured period starts here")
	failLog := flag.String("fail-log", "", "one line per failed request: MS SLOT CONN KIND ERROR")
	connLog := flag.String("conn-log", "", "one line per connection: ID SLOT OPEN_MS END_MS END GOAWAYS=last/code@ms,… RST=N")
	flag.Parse()

	u, err := url.Parse(*target)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		fmt.Fprintln(os.Stderr, "h2client: -url must be http:// or https://")
		os.Exit(2)
	}
	useTLS := u.Scheme == "https"

	var failOut io.Writer = io.Discard
	var failMu sync.Mutex
	if *failLog != "" {
		f, err := os.Create(*failLog)
		if err != nil {
			fmt.Fprintln(os.Stderr, "h2client:", err)
			os.Exit(2)
		}
		defer f.Close()
		failOut = f
	}

	var connID int64
	var connsMu sync.Mutex
	var conns []*tapConn
	dialer := &net.Dialer{Timeout: *timeout}
	transports := make([]*http2.Transport, *slots)
	for i := range transports {
		slot := i
		dial := func(ctx context.Context, network, addr string, cfg *tls.Config) (net.Conn, error) {
			raw, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			var conn net.Conn = raw
			if useTLS {
				tc := tls.Client(raw, cfg)
				if err := tc.HandshakeContext(ctx); err != nil {
					raw.Close()
					return nil, err
				}
				if p := tc.ConnectionState().NegotiatedProtocol; p != "h2" {
					tc.Close()
					return nil, fmt.Errorf("ALPN chose %q, not h2", p)
				}
				conn = tc
			}
			c := newTapConn(conn, atomic.AddInt64(&connID, 1), slot)
			connsMu.Lock()
			conns = append(conns, c)
			connsMu.Unlock()
			return c, nil
		}
		t := &http2.Transport{DialTLSContext: dial}
		if useTLS {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}}
		} else {
			t.AllowHTTP = true
		}
		transports[i] = t
	}

	pidRe := regexp.MustCompile(`"pid"\s*:\s*(\d+)`)
	// one request; returns ok and records it in st
	do := func(slot int, st *stats) {
		ctx, cancel := context.WithTimeout(context.Background(), *timeout)
		defer cancel()
		attempts := 0
		var used *tapConn
		ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
			attempts++
			if c, ok := info.Conn.(*tapConn); ok {
				used = c
			}
		}})
		req, _ := http.NewRequestWithContext(ctx, "GET", *target, nil)
		t0 := time.Now()
		fail := func(kind string, err error) {
			st.failed++
			st.kinds[kind]++
			id := int64(0)
			if used != nil {
				id = used.id
			}
			failMu.Lock()
			fmt.Fprintf(failOut, "%d %d %d %s %v\n", sinceMs(), slot, id, kind, err)
			failMu.Unlock()
		}
		resp, err := transports[slot].RoundTrip(req)
		if attempts > 1 {
			st.retries += int64(attempts - 1)
		}
		if err != nil {
			fail(kindOf(err), err)
			return
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			fail("body_"+kindOf(err), err)
			return
		}
		if resp.StatusCode < 200 || resp.StatusCode > 299 {
			fail(fmt.Sprintf("status_%d", resp.StatusCode), fmt.Errorf("status %d", resp.StatusCode))
			return
		}
		st.ok++
		st.lat = append(st.lat, uint32(time.Since(t0).Microseconds()))
		if m := pidRe.FindSubmatch(body); m != nil {
			st.pids[string(m[1])]++
		}
	}

	n := *slots * *streams
	all := make([]*stats, n)
	for i := range all {
		all[i] = &stats{kinds: map[string]int64{}, pids: map[string]int64{}}
	}

	// Ramp: one request per slot (which opens its connection).
	rampStart := time.Now()
	var wg sync.WaitGroup
	sem := make(chan struct{}, 64)
	for s := 0; s < *slots; s++ {
		wg.Add(1)
		go func(s int) {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			do(s, all[s**streams])
		}(s)
	}
	wg.Wait()
	if time.Since(rampStart) > *rampTimeout {
		fmt.Fprintln(os.Stderr, "h2client: ramp took too long")
		os.Exit(1)
	}
	rampMs := time.Since(rampStart).Milliseconds()
	measuredStart := time.Now()
	if *readyFile != "" {
		os.WriteFile(*readyFile, []byte(fmt.Sprintf("%d\n", measuredStart.UnixMilli())), 0o644)
	}

	deadline := measuredStart.Add(*dur)
	var measuredOK int64
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			st := all[i]
			for time.Now().Before(deadline) {
				do(i / *streams, st)
			}
		}(i)
	}
	wg.Wait()
	elapsed := time.Since(measuredStart)
	for _, t := range transports {
		t.CloseIdleConnections()
	}
	time.Sleep(200 * time.Millisecond)

	// Totals.
	tot := stats{kinds: map[string]int64{}, pids: map[string]int64{}}
	for _, st := range all {
		tot.ok += st.ok
		tot.failed += st.failed
		tot.retries += st.retries
		for k, v := range st.kinds {
			tot.kinds[k] += v
		}
		for k, v := range st.pids {
			tot.pids[k] += v
		}
		tot.lat = append(tot.lat, st.lat...)
	}
	measuredOK = tot.ok
	sort.Slice(tot.lat, func(a, b int) bool { return tot.lat[a] < tot.lat[b] })
	pct := func(p float64) float64 {
		if len(tot.lat) == 0 {
			return -1
		}
		i := int(p * float64(len(tot.lat)-1))
		return float64(tot.lat[i]) / 1000
	}

	// Connections: how each ended, and the GOAWAYs it got.
	connsMu.Lock()
	ends := map[string]int{}
	rstCodes := map[string]int64{}
	var withGoAway, twoStep, goAwayNonZero, rsts, serverClosedNoGoAway int
	var connOut io.Writer = io.Discard
	if *connLog != "" {
		if f, err := os.Create(*connLog); err == nil {
			defer f.Close()
			connOut = f
		}
	}
	fmt.Fprintln(connOut, "# ID SLOT OPEN_MS END_MS END GOAWAYS(last/code@ms) RSTS(stream/code@ms) FRAMES(the last ones before the first GOAWAY | from it on; <: server, >: client)")
	for _, c := range conns {
		c.mu.Lock()
		end := c.end
		if end == "" {
			end = "open"
		}
		// x/net closes after the measured period too: that is "open" (at the end).
		if end == "client_close" && len(c.goAways) == 0 {
			end = "open"
		}
		ends[end]++
		if len(c.goAways) > 0 {
			withGoAway++
		}
		if len(c.goAways) >= 2 && c.goAways[0].last == 0x7fffffff && c.goAways[len(c.goAways)-1].last < 0x7fffffff {
			twoStep++
		}
		for _, g := range c.goAways {
			if g.code != 0 {
				goAwayNonZero++
			}
		}
		if end == "server_eof" && len(c.goAways) == 0 {
			serverClosedNoGoAway++
		}
		rsts += len(c.rsts)
		for _, r := range c.rsts {
			code := r[strings.Index(r, "/")+1 : strings.Index(r, "@")]
			rstCodes[code]++
		}
		var gs []string
		for _, g := range c.goAways {
			gs = append(gs, fmt.Sprintf("%d/%d@%d", g.last, g.code, g.atMs))
		}
		if len(gs) == 0 {
			gs = []string{"-"}
		}
		rs, trace := "-", "-"
		if len(c.rsts) > 0 {
			rs = strings.Join(c.rsts, ",")
		}
		if len(c.goAways) > 0 || len(c.rsts) > 0 || end != "open" {
			trace = strings.Join(c.before, ",") + "|" + strings.Join(c.after, ",")
		}
		fmt.Fprintf(connOut, "%d %d %d %d %s %s %s %s\n", c.id, c.slot, c.openMs, c.endMs, end, strings.Join(gs, ","), rs, trace)
		c.mu.Unlock()
	}
	nConns := len(conns)
	connsMu.Unlock()

	join := func(m map[string]int64) string {
		var ks []string
		for k, v := range m {
			if v > 0 {
				ks = append(ks, fmt.Sprintf("%s:%d", k, v))
			}
		}
		sort.Strings(ks)
		if len(ks) == 0 {
			return "-"
		}
		return strings.Join(ks, ",")
	}
	endsM := map[string]int64{}
	for k, v := range ends {
		endsM[k] = int64(v)
	}
	fmt.Printf("ok=%d failed=%d kinds=%s retries=%d conns=%d conns_goaway=%d two_step_goaway=%d goaway_errors=%d rst_stream=%d rst_codes=%s server_closed_without_goaway=%d ends=%s pids=%d rps=%.0f p50_ms=%.2f p99_ms=%.2f max_ms=%.1f ramp_ms=%d\n",
		tot.ok, tot.failed, join(tot.kinds), tot.retries, nConns, withGoAway, twoStep, goAwayNonZero, rsts, join(rstCodes), serverClosedNoGoAway,
		join(endsM), len(tot.pids), float64(measuredOK)/elapsed.Seconds(), pct(0.5), pct(0.99), pct(1), rampMs)
}
