// loadclient: an HTTP/1.1 keep-alive load client for Benchmarks/run.sh and ScaleTests that counts what wrk
// cannot: how often the *server* closed a connection (so the client had to reconnect), per 100 ms,
// next to the requests, failures, latency and the "pid" of each JSON answer.
//
// N connections (-c), each a goroutine in a closed loop: write `GET PATH HTTP/1.1`, read the
// response (status line, headers, Content-Length or chunked body), record the latency, repeat.
// Raw TCP + bufio (not net/http), standard library only; builds in GOPATH mode:
//
//	GO111MODULE=off go build -o loadclient .
//
// -close sends `Connection: close` with every request (a new connection per request; each close
// counts as a reconnect, reason close_header).
//
// -rate R makes it an open loop: each connection sends one request every c/R seconds (evenly
// staggered), and a request's latency counts from when it was due, so a stall is not hidden by the
// requests it prevented (wrk2's correction of coordinated omission). Without -rate each connection
// sends its next request as soon as it has the answer (closed loop, like wrk): the server is
// saturated and its latency is mostly queueing.
//
// Every connection is opened (and answers one request) before the measured period starts; the ramp
// time is reported. During the measured period (-d):
//
//   - ok: a 2xx answer read completely.
//   - failures, by kind: connect (dial failed), write (the request could not be written), read (an
//     error or EOF in the middle of a response, or before any byte on a connection's first request),
//     reset_on_reuse (the request was written on a reused connection and the connection was closed
//     or reset before any byte of the answer, although the server had not signalled a close: the
//     keep-alive race a real client sees as an error), timeout (no complete answer in -timeout),
//     status (a non-2xx answer), parse (not HTTP), unfinished (still unanswered -timeout + 1 s after
//     the end: the client waits for every request in flight when the measured period ends, so that
//     none goes uncounted).
//   - server closes, which are not failures: the answer carried `Connection: close` (close_header),
//     or the server had closed the idle connection before the next request was written (closed_idle:
//     seen by a non-blocking MSG_PEEK before each write, as an HTTP client's idle pool would).
//   - reconnects: a connection of the run replaced by a new one, for any of the reasons above
//     (server close or failure). Counted when the old connection is dropped. The latency of the
//     next request on that slot includes the connect.
//
// Per 100 ms bucket (by completion time, unix ms) the client keeps these counters, the pids that
// answered and a log-linear latency histogram (≈3 % resolution), written to -timeline:
//
//	# ms ok fail reconnects p50_ms p99_ms max_ms pids=PID:N,… fails=KIND:N,… hist=US:N,…
//
// hist lists the non-empty histogram bins as "lower bound in µs:count", so that a consumer can merge
// buckets (a p99 over one second). -summary prints one JSON object with the totals to stdout.
// -ready-file FILE: the unix ms at which the measured period starts is written there once the ramp
// is over (the benchmark schedules its upgrades from it).
// -slow-log FILE: one line per request slower than -slow-ms (or failed; -slow-ms 0: every request), to find where the slow
// ones come from: "SENT_MS TOOK_MS SLOT PREV_PID PID KIND PORT", in the order they were sent (ms
// since the start; PREV_PID answered the slot's previous request on the same connection, 0 after a
// new connection; KIND ok or the failure kind; PORT the client's port, to find the connection in a
// server's log).
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"math/bits"
	"net"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// ---------------------------------------------------------------- histogram

const (
	subBits  = 5
	subCount = 1 << subBits // 32 sub-bins per power of two
	linear   = 2 * subCount // values below 64 µs have their own bin
	nBins    = linear + 40*subCount
)

func binOf(us uint64) int {
	if us < linear {
		return int(us)
	}
	shift := bits.Len64(us) - (subBits + 1)
	i := linear + (shift-1)*subCount + int(us>>uint(shift)) - subCount
	if i >= nBins {
		i = nBins - 1
	}
	return i
}

func binLow(i int) uint64 {
	if i < linear {
		return uint64(i)
	}
	shift := (i-linear)/subCount + 1
	return uint64((i-linear)%subCount+subCount) << uint(shift)
}

// ---------------------------------------------------------------- per-bucket counters

const bucketMs = 100

const (
	fConnect = iota
	fWrite
	fRead
	fResetOnReuse
	fTimeout
	fStatus
	fParse
	fUnfinished // still in flight when the client gave up waiting after the end (timeout + 1 s)
	nFailKinds
)

var failNames = [nFailKinds]string{"connect", "write", "read", "reset_on_reuse", "timeout", "status", "parse", "unfinished"}

const (
	rCloseHeader = iota
	rClosedIdle
	rAfterFailure
	nReasons
)

var reasonNames = [nReasons]string{"close_header", "closed_idle", "after_failure"}

const pidSlots = 8

type bucket struct {
	ok         atomic.Int64
	fails      [nFailKinds]atomic.Int64
	reconnects [nReasons]atomic.Int64
	maxUs      atomic.Int64
	pidKey     [pidSlots]atomic.Int64
	pidN       [pidSlots]atomic.Int64
	pidOther   atomic.Int64
	hist       [nBins]atomic.Int32
}

type recorder struct {
	base    int64 // unix ms / bucketMs of buckets[0]
	buckets []bucket
	late    atomic.Int64 // events outside the bucket range (should stay 0)
}

func newRecorder(fromMs int64, span time.Duration) *recorder {
	n := int(span/time.Millisecond)/bucketMs + 1
	return &recorder{base: fromMs / bucketMs, buckets: make([]bucket, n)}
}

func (r *recorder) at(t time.Time) *bucket {
	i := t.UnixMilli()/bucketMs - r.base
	if i < 0 || i >= int64(len(r.buckets)) {
		r.late.Add(1)
		return nil
	}
	return &r.buckets[i]
}

func (r *recorder) ok(t time.Time, lat time.Duration, pid int64) {
	b := r.at(t)
	if b == nil {
		return
	}
	b.ok.Add(1)
	us := lat.Microseconds()
	if us < 0 {
		us = 0
	}
	b.hist[binOf(uint64(us))].Add(1)
	for {
		m := b.maxUs.Load()
		if us <= m || b.maxUs.CompareAndSwap(m, us) {
			break
		}
	}
	if pid <= 0 {
		pid = -1 // answers without a pid: counted under -1
	}
	for s := 0; s < pidSlots; s++ {
		k := b.pidKey[s].Load()
		if k == 0 && b.pidKey[s].CompareAndSwap(0, pid) {
			k = pid
		} else if k == 0 {
			k = b.pidKey[s].Load()
		}
		if k == pid {
			b.pidN[s].Add(1)
			return
		}
	}
	b.pidOther.Add(1)
}

func (r *recorder) fail(t time.Time, kind int) {
	if b := r.at(t); b != nil {
		b.fails[kind].Add(1)
	}
}

func (r *recorder) reconnect(t time.Time, reason int) {
	if b := r.at(t); b != nil {
		b.reconnects[reason].Add(1)
	}
}

// ---------------------------------------------------------------- one connection

var (
	errNotHTTP   = errors.New("not an HTTP response")
	errTooLarge  = errors.New("response header too large")
	errBadLength = errors.New("bad Content-Length")
)

type conn struct {
	c      *net.TCPConn
	raw    syscall.RawConn
	rd     *bufio.Reader
	reused bool // at least one answer was read on this connection
}

type client struct {
	addr     string
	request  []byte
	timeout  time.Duration
	peek     bool
	interval time.Duration // > 0: open loop, each connection sends one request every interval
	t0       time.Time     // start of the measured period
	rec      *recorder     // nil during the ramp
	stop     atomic.Bool
	rampFail atomic.Int64
	inFlight atomic.Int64 // requests of the measured period written and not yet answered or failed
	slowLog  bool         // -slow-log given
	slowMs   int64        // 0: every request
	slowMu   sync.Mutex
	slow     []slowRequest
}

type slowRequest struct {
	sentMs int64
	line   string
}

// noteSlow keeps a line for the -slow-log when the request took -slow-ms or more, or failed.
func (cl *client) noteSlow(slot int, cn *conn, sent time.Time, took time.Duration, prev, pid int64, kind string) {
	if !cl.slowLog || (kind == "ok" && took.Milliseconds() < cl.slowMs) {
		return
	}
	port := 0
	if cn != nil {
		if a, ok := cn.c.LocalAddr().(*net.TCPAddr); ok {
			port = a.Port
		}
	}
	sentMs := sent.Sub(cl.t0).Milliseconds()
	line := fmt.Sprintf("%d %d %d %d %d %s %d", sentMs, took.Milliseconds(), slot, prev, pid, kind, port)
	cl.slowMu.Lock()
	cl.slow = append(cl.slow, slowRequest{sentMs, line})
	cl.slowMu.Unlock()
}

func (cl *client) dial() (*conn, error) {
	c, err := net.DialTimeout("tcp", cl.addr, cl.timeout)
	if err != nil {
		return nil, err
	}
	tc := c.(*net.TCPConn)
	tc.SetNoDelay(true)
	raw, err := tc.SyscallConn()
	if err != nil {
		tc.Close()
		return nil, err
	}
	return &conn{c: tc, raw: raw, rd: bufio.NewReaderSize(tc, 16<<10)}, nil
}

// closedByPeer: a non-blocking MSG_PEEK on an idle connection; true if the peer closed (EOF) or
// reset it. Unexpected bytes (none should come unasked) count as not closed: the read will tell.
func (cn *conn) closedByPeer() bool {
	if cn.rd.Buffered() > 0 {
		return false
	}
	var closed bool
	var one [1]byte
	cn.raw.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), one[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		if err == nil && n == 0 {
			closed = true
		} else if err != nil && err != syscall.EAGAIN && err != syscall.EINTR {
			closed = true
		}
		return true
	})
	return closed
}

type result struct {
	pid        int64
	closeAfter bool
	status     int
}

// roundTrip writes the request and reads one response. gotByte tells whether any byte of the
// answer arrived (to tell a reset on reuse from an error mid-response).
func (cl *client) roundTrip(cn *conn, now time.Time) (res result, gotByte bool, kind int, err error) {
	cn.c.SetDeadline(now.Add(cl.timeout)) // per request: -timeout is exactly what a request gets
	if _, err = cn.c.Write(cl.request); err != nil {
		return res, false, classify(err, fWrite), err
	}
	line, err := cn.rd.ReadSlice('\n')
	if err != nil {
		if len(line) > 0 {
			gotByte = true
		}
		return res, gotByte, classify(err, fRead), err
	}
	gotByte = true
	// HTTP/1.x SSS reason
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) {
		return res, true, fParse, errNotHTTP
	}
	res.status, err = strconv.Atoi(string(line[9:12]))
	if err != nil {
		return res, true, fParse, errNotHTTP
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1")) {
		res.closeAfter = true // HTTP/1.0 answer without keep-alive handling: treat as close
	}
	length, chunked := int64(-1), false
	for {
		h, err := cn.rd.ReadSlice('\n')
		if err != nil {
			if err == bufio.ErrBufferFull {
				return res, true, fParse, errTooLarge
			}
			return res, true, classify(err, fRead), err
		}
		if len(h) <= 2 { // "\r\n": end of headers
			break
		}
		colon := bytes.IndexByte(h, ':')
		if colon <= 0 {
			continue
		}
		name := h[:colon]
		value := bytes.TrimSpace(h[colon+1:])
		switch {
		case asciiEqualFold(name, "content-length"):
			length, err = strconv.ParseInt(string(value), 10, 64)
			if err != nil || length < 0 {
				return res, true, fParse, errBadLength
			}
		case asciiEqualFold(name, "connection"):
			if containsToken(value, "close") {
				res.closeAfter = true
			}
		case asciiEqualFold(name, "transfer-encoding"):
			if containsToken(value, "chunked") {
				chunked = true
			}
		}
	}
	var body []byte
	switch {
	case chunked:
		body, err = readChunked(cn.rd)
	case length >= 0:
		if length <= int64(cn.rd.Size()) {
			body, err = cn.rd.Peek(int(length))
			if err == nil {
				res.pid = findPid(body)
				_, err = cn.rd.Discard(int(length))
				body = nil
			}
		} else {
			body = make([]byte, length)
			_, err = io.ReadFull(cn.rd, body)
		}
	default: // body until close
		body, err = io.ReadAll(cn.rd)
		res.closeAfter = true
	}
	if err != nil {
		return res, true, classify(err, fRead), err
	}
	if body != nil {
		res.pid = findPid(body)
	}
	if res.status < 200 || res.status > 299 {
		return res, true, fStatus, fmt.Errorf("status %d", res.status)
	}
	return res, true, -1, nil
}

func classify(err error, def int) int {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return fTimeout
	}
	return def
}

func readChunked(rd *bufio.Reader) ([]byte, error) {
	var body []byte
	for {
		line, err := rd.ReadSlice('\n')
		if err != nil {
			return nil, err
		}
		s := strings.TrimSpace(string(line))
		if i := strings.IndexByte(s, ';'); i >= 0 {
			s = s[:i]
		}
		n, err := strconv.ParseInt(s, 16, 64)
		if err != nil || n < 0 {
			return nil, errBadLength
		}
		if n == 0 {
			for { // trailers until the empty line
				t, err := rd.ReadSlice('\n')
				if err != nil {
					return nil, err
				}
				if len(t) <= 2 {
					return body, nil
				}
			}
		}
		chunk := make([]byte, n+2)
		if _, err := io.ReadFull(rd, chunk); err != nil {
			return nil, err
		}
		body = append(body, chunk[:n]...)
	}
}

var pidKey = []byte(`"pid"`)

func findPid(body []byte) int64 {
	i := bytes.Index(body, pidKey)
	if i < 0 {
		return 0
	}
	b := body[i+len(pidKey):]
	j := 0
	for j < len(b) && (b[j] == ' ' || b[j] == ':' || b[j] == '\t') {
		j++
	}
	var v int64
	k := j
	for k < len(b) && b[k] >= '0' && b[k] <= '9' {
		v = v*10 + int64(b[k]-'0')
		k++
	}
	if k == j {
		return 0
	}
	return v
}

func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(b); i++ {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func containsToken(v []byte, tok string) bool {
	for _, part := range bytes.Split(v, []byte(",")) {
		if asciiEqualFold(bytes.TrimSpace(part), tok) {
			return true
		}
	}
	return false
}

// worker: one connection slot. ramp: dial and one request (retried until it works or the ramp
// deadline passes), then wait for start; then the measured loop until stop.
func (cl *client) worker(slot int, wg *sync.WaitGroup, sem chan struct{}, rampDone *sync.WaitGroup, rampDeadline time.Time, start <-chan struct{}, phase time.Duration) {
	defer wg.Done()
	var cn *conn
	sem <- struct{}{}
	for opened := false; !opened; {
		c, err := cl.dial()
		if err == nil {
			var res result
			res, _, _, err = cl.roundTrip(c, time.Now())
			if err == nil {
				opened = true
				if res.closeAfter {
					// The server said it closes this one (-close): the first measured request
					// opens a new connection. Kept, it would race the server's FIN.
					c.c.Close()
				} else {
					c.reused = true
					cn = c
				}
				break
			}
			c.c.Close()
		}
		cl.rampFail.Add(1)
		if time.Now().After(rampDeadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	<-sem
	rampDone.Done()
	<-start
	rec := cl.rec
	drop := func(t time.Time, reason int) {
		if cn != nil {
			cn.c.Close()
			cn = nil
		}
		rec.reconnect(t, reason)
	}
	next := cl.t0.Add(phase)
	var prevPid int64 // answered the previous request on this connection (0: a new connection)
	for !cl.stop.Load() {
		// The latency of a request that needs a new connection includes the connect: a reconnect
		// is part of what an upgrade costs the client.
		t0 := time.Now()
		if cl.interval > 0 {
			// Open loop: the request is due at `next`; its latency counts from then, also when the
			// previous answer came late (no coordinated omission).
			if d := next.Sub(t0); d > 0 {
				time.Sleep(d)
				if cl.stop.Load() {
					break
				}
			}
			t0 = next
			next = next.Add(cl.interval)
		}
		if cn != nil && cl.peek && cn.reused && cn.closedByPeer() {
			drop(t0, rClosedIdle)
			prevPid = 0
		}
		if cn == nil {
			c, err := cl.dial()
			if err != nil {
				rec.fail(time.Now(), classify(err, fConnect))
				time.Sleep(10 * time.Millisecond)
				continue
			}
			cn = c
			prevPid = 0
		}
		cl.inFlight.Add(1)
		res, gotByte, kind, err := cl.roundTrip(cn, time.Now())
		cl.inFlight.Add(-1)
		t1 := time.Now()
		if err != nil {
			if kind == fRead && !gotByte && cn.reused {
				kind = fResetOnReuse
			}
			cl.noteSlow(slot, cn, t0, t1.Sub(t0), prevPid, res.pid, failNames[kind])
			if kind == fStatus {
				rec.fail(t1, fStatus)
				if !res.closeAfter {
					cn.reused = true
					continue
				}
			} else {
				rec.fail(t1, kind)
			}
			drop(t1, rAfterFailure)
			prevPid = 0
			continue
		}
		rec.ok(t1, t1.Sub(t0), res.pid) // t0: before the connect, or when the request was due
		cl.noteSlow(slot, cn, t0, t1.Sub(t0), prevPid, res.pid, "ok")
		prevPid = res.pid
		cn.reused = true
		if res.closeAfter {
			drop(t1, rCloseHeader)
			prevPid = 0
		}
	}
	if cn != nil {
		cn.c.Close()
	}
}

// ---------------------------------------------------------------- output

type bucketView struct {
	ms         int64
	ok         int64
	fail       int64
	reconnects int64
	fails      [nFailKinds]int64
	reasons    [nReasons]int64
	pids       map[int64]int64
	hist       []int64
	maxUs      int64
}

func (r *recorder) view(i int) bucketView {
	b := &r.buckets[i]
	v := bucketView{ms: (r.base + int64(i)) * bucketMs, ok: b.ok.Load(), maxUs: b.maxUs.Load(), pids: map[int64]int64{}}
	for k := range b.fails {
		v.fails[k] = b.fails[k].Load()
		v.fail += v.fails[k]
	}
	for k := range b.reconnects {
		v.reasons[k] = b.reconnects[k].Load()
		v.reconnects += v.reasons[k]
	}
	for s := 0; s < pidSlots; s++ {
		if n := b.pidN[s].Load(); n > 0 {
			v.pids[b.pidKey[s].Load()] += n
		}
	}
	if n := b.pidOther.Load(); n > 0 {
		v.pids[-2] += n // more distinct pids in one bucket than slots
	}
	v.hist = make([]int64, nBins)
	for k := range b.hist {
		v.hist[k] = int64(b.hist[k].Load())
	}
	return v
}

func percentileUs(hist []int64, p float64) float64 {
	var total int64
	for _, n := range hist {
		total += n
	}
	if total == 0 {
		return 0
	}
	rank := int64(p/100*float64(total) + 0.5)
	if rank < 1 {
		rank = 1
	}
	var acc int64
	for i, n := range hist {
		acc += n
		if acc >= rank {
			return float64(binLow(i)) // the bin's lower bound (bins are ≈3 % wide)
		}
	}
	return float64(binLow(nBins - 1))
}

// cpuSeconds: user + system CPU time of this process (is the client itself the bottleneck?)
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return -1
	}
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}

func sortedPids(m map[int64]int64) []int64 {
	keys := make([]int64, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(a, b int) bool { return keys[a] < keys[b] })
	return keys
}

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server host:port")
	path := flag.String("path", "/hello", "request path")
	host := flag.String("host", "", "Host header (default: -addr)")
	conns := flag.Int("c", 64, "connections")
	dur := flag.Duration("d", 10*time.Second, "measured duration (after the ramp)")
	timeout := flag.Duration("timeout", 10*time.Second, "per-request timeout (and dial timeout)")
	rampTimeout := flag.Duration("ramp-timeout", 60*time.Second, "give up opening connections after this long")
	rampParallel := flag.Int("ramp-parallel", 64, "connections being opened at once during the ramp")
	peek := flag.Bool("peek", true, "before each request, MSG_PEEK whether the server closed the idle connection (counted as closed_idle, not as a failure)")
	timeline := flag.String("timeline", "", "write one line per 100 ms bucket to this file")
	summary := flag.Bool("summary", false, "print a JSON summary to stdout")
	readyFile := flag.String("ready-file", "", "write the unix ms at which the measured period starts here")
	closeEach := flag.Bool("close", false, "send a Connection: close header with every request (a new connection per request; each close is counted as a reconnect, reason close_header)")
	slowLog := flag.String("slow-log", "", "write one line per request slower than -slow-ms (or failed) to this file")
	slowMs := flag.Int64("slow-ms", 2000, "what -slow-log counts as slow (0: every request)")
	rate := flag.Float64("rate", 0, "total requests/s, spread evenly over the connections (open loop, latency from when each request was due); 0: closed loop, each connection sends as soon as it has its answer")
	flag.Parse()
	if *conns < 1 {
		fmt.Fprintln(os.Stderr, "-c must be >= 1")
		os.Exit(2)
	}
	h := *host
	if h == "" {
		h = *addr
	}
	extra := ""
	if *closeEach {
		extra = "Connection: close\r\n"
	}
	cl := &client{
		addr:    *addr,
		request: []byte("GET " + *path + " HTTP/1.1\r\nHost: " + h + "\r\nUser-Agent: baton-handoff-loadclient\r\n" + extra + "\r\n"),
		timeout: *timeout,
		peek:    *peek,
	}
	if *slowLog != "" {
		cl.slowLog, cl.slowMs = true, *slowMs
	}
	if *rate > 0 {
		cl.interval = time.Duration(float64(*conns) / *rate * float64(time.Second))
	}

	rampStart := time.Now()
	var wg, rampDone sync.WaitGroup
	sem := make(chan struct{}, *rampParallel)
	start := make(chan struct{})
	wg.Add(*conns)
	rampDone.Add(*conns)
	for i := 0; i < *conns; i++ {
		// connection i is due at t0 + i/c of the interval, then every interval
		go cl.worker(i, &wg, sem, &rampDone, rampStart.Add(*rampTimeout), start, time.Duration(int64(cl.interval)*int64(i)/int64(*conns)))
	}
	rampDone.Wait()
	rampMs := time.Since(rampStart).Milliseconds()
	fmt.Fprintf(os.Stderr, "loadclient: %d connections opened in %d ms (%d failed attempts)\n", *conns, rampMs, cl.rampFail.Load())

	t0 := time.Now()
	cl.t0 = t0
	// buckets from the start to the end plus the drain of the last requests
	cl.rec = newRecorder(t0.UnixMilli(), *dur+*timeout+2*time.Second)
	if *readyFile != "" {
		os.WriteFile(*readyFile, []byte(strconv.FormatInt(t0.UnixMilli(), 10)+"\n"), 0o644)
	}
	close(start)
	time.Sleep(time.Until(t0.Add(*dur)))
	cl.stop.Store(true)
	tStop := time.Now()
	done := make(chan struct{})
	go func() { wg.Wait(); close(done) }()
	// Every request in flight at the stop is waited for (its latency counts, and past -timeout it
	// fails as a timeout); one still unanswered after -timeout + 1 s counts as failed (unfinished):
	// no request of the measured period goes uncounted.
	unfinished := false
	select {
	case <-done:
	case <-time.After(*timeout + time.Second):
		unfinished = true
		n := cl.inFlight.Load()
		for i := int64(0); i < n; i++ {
			cl.rec.fail(time.Now(), fUnfinished)
		}
		fmt.Fprintf(os.Stderr, "loadclient: %d requests still in flight %s after the end: counted as failed (unfinished)\n", n, *timeout+time.Second)
	}
	_ = tStop
	if *slowLog != "" {
		cl.slowMu.Lock()
		sort.SliceStable(cl.slow, func(a, b int) bool { return cl.slow[a].sentMs < cl.slow[b].sentMs })
		var data strings.Builder
		data.WriteString("# SENT_MS TOOK_MS SLOT PREV_PID PID KIND PORT\n")
		for _, r := range cl.slow {
			data.WriteString(r.line + "\n")
		}
		cl.slowMu.Unlock()
		if err := os.WriteFile(*slowLog, []byte(data.String()), 0o644); err != nil {
			fmt.Fprintln(os.Stderr, "loadclient:", err)
		}
	}

	rec := cl.rec
	last := -1
	views := make([]bucketView, len(rec.buckets))
	for i := range rec.buckets {
		views[i] = rec.view(i)
		v := &views[i]
		if v.ok+v.fail+v.reconnects > 0 {
			last = i
		}
	}
	views = views[:last+1]

	var okN, failN int64
	var fails [nFailKinds]int64
	var reasons [nReasons]int64
	pids := map[int64]int64{}
	all := make([]int64, nBins)
	var maxUs int64
	for _, v := range views {
		okN += v.ok
		failN += v.fail
		for k := range fails {
			fails[k] += v.fails[k]
		}
		for k := range reasons {
			reasons[k] += v.reasons[k]
		}
		for p, n := range v.pids {
			pids[p] += n
		}
		for k, n := range v.hist {
			all[k] += n
		}
		if v.maxUs > maxUs {
			maxUs = v.maxUs
		}
	}

	if *timeline != "" {
		f, err := os.Create(*timeline)
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadclient:", err)
			os.Exit(2)
		}
		w := bufio.NewWriter(f)
		fmt.Fprintf(w, "# loadclient timeline: addr=%s c=%d d=%s bucket_ms=%d start_ms=%d ramp_ms=%d\n", *addr, *conns, *dur, bucketMs, t0.UnixMilli(), rampMs)
		fmt.Fprintln(w, "# ms ok fail reconnects p50_ms p99_ms max_ms pids=PID:N,... fails=KIND:N,... reasons=REASON:N,... hist=LOW_US:N,...")
		for _, v := range views {
			fmt.Fprintf(w, "%d %d %d %d %.3f %.3f %.3f", v.ms, v.ok, v.fail, v.reconnects,
				percentileUs(v.hist, 50)/1000, percentileUs(v.hist, 99)/1000, float64(v.maxUs)/1000)
			var parts []string
			for _, p := range sortedPids(v.pids) {
				parts = append(parts, fmt.Sprintf("%d:%d", p, v.pids[p]))
			}
			fmt.Fprintf(w, " pids=%s", strings.Join(parts, ","))
			parts = parts[:0]
			for k, n := range v.fails {
				if n > 0 {
					parts = append(parts, fmt.Sprintf("%s:%d", failNames[k], n))
				}
			}
			fmt.Fprintf(w, " fails=%s", strings.Join(parts, ","))
			parts = parts[:0]
			for k, n := range v.reasons {
				if n > 0 {
					parts = append(parts, fmt.Sprintf("%s:%d", reasonNames[k], n))
				}
			}
			fmt.Fprintf(w, " reasons=%s", strings.Join(parts, ","))
			parts = parts[:0]
			for k, n := range v.hist {
				if n > 0 {
					parts = append(parts, fmt.Sprintf("%d:%d", binLow(k), n))
				}
			}
			fmt.Fprintf(w, " hist=%s\n", strings.Join(parts, ","))
		}
		w.Flush()
		f.Close()
	}

	if *summary {
		failMap := map[string]int64{}
		for k, n := range fails {
			failMap[failNames[k]] = n
		}
		reasonMap := map[string]int64{}
		var reconnects int64
		for k, n := range reasons {
			reasonMap[reasonNames[k]] = n
			reconnects += n
		}
		pidMap := map[string]int64{}
		for p, n := range pids {
			pidMap[strconv.FormatInt(p, 10)] = n
		}
		secs := dur.Seconds()
		out := map[string]any{
			"addr":          *addr,
			"connections":   *conns,
			"duration_s":    secs,
			"start_ms":      t0.UnixMilli(),
			"ramp_ms":       rampMs,
			"ramp_failures": cl.rampFail.Load(),
			"requests_ok":   okN,
			"rps":           float64(okN) / secs,
			"rate":          *rate,
			"failures":      failN,
			"failure_kinds": failMap,
			// server_closes: the server ended a connection without a failure
			"server_closes":     reasons[rCloseHeader] + reasons[rClosedIdle],
			"reconnects":        reconnects,
			"reconnect_reasons": reasonMap,
			"p50_ms":            percentileUs(all, 50) / 1000,
			"p99_ms":            percentileUs(all, 99) / 1000,
			"max_ms":            float64(maxUs) / 1000,
			"pids":              pidMap,
			"distinct_pids":     len(pids),
			"late_events":       rec.late.Load(),
			"client_cpu_s":      cpuSeconds(),
			"unfinished":        unfinished,
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		enc.Encode(out)
	}
}
