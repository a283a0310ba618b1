// wsclient: WebSocket echo clients that reconnect, for Baton's WebSocket drain benchmark
// (Benchmarks/protocols/ws.sh).
//
// Each of -c clients connects to -url, sends a numbered text message ("<client> <seq>") every
// -interval and records each echo; when the server closes, it records the close code, whether
// the server's drain notice (a text starting with "baton:") came first, and when; then it
// reconnects at once. At the end (-d) every client sends its own close (1000). A message counts
// as sent once written; it is lost if its echo never came.
//
// With -heed-notice a client does what the drain notice asks: it stops writing on that
// connection, opens a new one at once and sends its next messages there, while the old one
// receives its last echoes; then it closes the old one itself (1000; 3 s at most). Without it
// (the default) the notice is only counted, and messages go on crossing the server's close.
//
// Output (-summary): one JSON object; -closes FILE: one line per close the server started,
// "<unix ms> <code> <notice first 0|1> <client>", and per move on a notice (code 0).
//
// Built offline in GOPATH mode against Debian's golang-github-gorilla-websocket-dev.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/websocket"
)

type closeRecord struct {
	at     time.Time
	code   int
	notice bool
	client int
}

type totals struct {
	sent, echoed, connects, dialErrors, abnormal, readErrors int64
}

func main() {
	url := flag.String("url", "ws://127.0.0.1:8080/ws", "WebSocket URL")
	clients := flag.Int("c", 2000, "clients")
	duration := flag.Duration("d", 20*time.Second, "how long to run after every client has connected once")
	interval := flag.Duration("interval", 100*time.Millisecond, "between a client's messages")
	rampParallel := flag.Int("ramp-parallel", 64, "connections being opened at once during the ramp")
	readyFile := flag.String("ready-file", "", "write the unix ms at which all clients are connected here")
	closesFile := flag.String("closes", "", "one line per close the server started")
	summary := flag.Bool("summary", false, "print a JSON summary to stdout")
	heedNotice := flag.Bool("heed-notice", false, "on the server's drain notice, move to a new connection at once")
	flag.Parse()

	var t totals
	var mu sync.Mutex
	var closes []closeRecord
	var stop atomic.Bool
	stopped := make(chan struct{})
	var wg sync.WaitGroup
	sentSets := make([]map[int]bool, *clients)
	// How the connection each message went out on ended: 's' the server closed it, 'c' the
	// client closed it at the end of the run, 'e' an error.
	endOf := make([]map[int]byte, *clients)
	sentAt := make([]map[int]time.Time, *clients)
	var rttMu sync.Mutex
	var rtts []float64
	echoSets := make([]map[int]bool, *clients)
	var setMu = make([]sync.Mutex, *clients)
	ramp := make(chan struct{}, *rampParallel)
	var connectedOnce sync.WaitGroup
	connectedOnce.Add(*clients)
	dialer := websocket.Dialer{HandshakeTimeout: 30 * time.Second}

	for i := 0; i < *clients; i++ {
		sentSets[i] = map[int]bool{}
		endOf[i] = map[int]byte{}
		sentAt[i] = map[int]time.Time{}
		echoSets[i] = map[int]bool{}
		wg.Add(1)
		go func(id int) {
			defer wg.Done()
			seq := 0
			first := true
			for !stop.Load() {
				if first {
					ramp <- struct{}{}
				}
				conn, _, err := dialer.Dial(*url, nil)
				if first {
					<-ramp
				}
				if err != nil {
					atomic.AddInt64(&t.dialErrors, 1)
					time.Sleep(50 * time.Millisecond)
					continue
				}
				atomic.AddInt64(&t.connects, 1)
				if first {
					first = false
					connectedOnce.Done()
				}
				var notice atomic.Bool
				var serverClosed atomic.Bool
				var clientClosing atomic.Bool // we sent the close: its answer is no server close
				noticed := make(chan struct{})
				var noticeOnce sync.Once
				firstSeq := seq
				done := make(chan struct{})
				var writeMu sync.Mutex
				// Reader: echoes and the server's close.
				go func() {
					defer close(done)
					for {
						_, data, err := conn.ReadMessage()
						if err != nil {
							if ce, ok := err.(*websocket.CloseError); ok {
								if (!stop.Load() && !clientClosing.Load()) || ce.Code != websocket.CloseNormalClosure {
									serverClosed.Store(true)
									mu.Lock()
									closes = append(closes, closeRecord{time.Now(), ce.Code, notice.Load(), id})
									mu.Unlock()
								}
								if ce.Code == websocket.CloseAbnormalClosure {
									atomic.AddInt64(&t.abnormal, 1)
								}
							} else if !stop.Load() {
								atomic.AddInt64(&t.readErrors, 1)
							}
							return
						}
						text := string(data)
						if strings.HasPrefix(text, "baton:") {
							notice.Store(true)
							noticeOnce.Do(func() {
								close(noticed)
								if *heedNotice {
									mu.Lock()
									closes = append(closes, closeRecord{time.Now(), 0, true, id})
									mu.Unlock()
								}
							})
							continue
						}
						if k := strings.LastIndexByte(text, ' '); k >= 0 {
							if n, err := strconv.Atoi(text[k+1:]); err == nil {
								setMu[id].Lock()
								echoSets[id][n] = true
								at, ok := sentAt[id][n]
								setMu[id].Unlock()
								if ok && n%10 == 0 {
									rttMu.Lock()
									rtts = append(rtts, float64(time.Since(at).Microseconds())/1000)
									rttMu.Unlock()
								}
								atomic.AddInt64(&t.echoed, 1)
							}
						}
					}
				}()
				var heeded <-chan struct{} // nil (never ready) unless the client heeds the notice
				if *heedNotice {
					heeded = noticed
				}
				moved := false
				ticker := time.NewTicker(*interval)
			loop:
				for !stop.Load() {
					select {
					case <-done:
						break loop
					case <-heeded:
						moved = true
						break loop
					case <-ticker.C:
						writeMu.Lock()
						setMu[id].Lock()
						sentAt[id][seq] = time.Now()
						setMu[id].Unlock()
						err := conn.WriteMessage(websocket.TextMessage, []byte(fmt.Sprintf("%d %d", id, seq)))
						writeMu.Unlock()
						if err != nil {
							break loop
						}
						setMu[id].Lock()
						sentSets[id][seq] = true
						setMu[id].Unlock()
						atomic.AddInt64(&t.sent, 1)
						seq++
					}
				}
				ticker.Stop()
				// The connection's end: wait for the reader (closing our side first at the end
				// of the run), then note how the connection each of its messages went on ended.
				finish := func(conn *websocket.Conn, lastSeq int) {
					if moved {
						// Its last echoes first (3 s at most), then our own close.
						for k := 0; k < 300 && !stop.Load(); k++ {
							setMu[id].Lock()
							all := true
							for n := firstSeq; n < lastSeq && all; n++ {
								all = echoSets[id][n]
							}
							setMu[id].Unlock()
							if all {
								break
							}
							select {
							case <-done:
							case <-time.After(10 * time.Millisecond):
							}
						}
						clientClosing.Store(true)
					} else if !stop.Load() {
						select {
						case <-done:
						case <-stopped:
						}
					}
					select {
					case <-done:
					default:
						writeMu.Lock()
						conn.WriteControl(websocket.CloseMessage, websocket.FormatCloseMessage(websocket.CloseNormalClosure, ""), time.Now().Add(time.Second))
						writeMu.Unlock()
						select {
						case <-done:
						case <-time.After(2 * time.Second):
						}
					}
					conn.Close()
					end := byte('e')
					if serverClosed.Load() {
						end = 's'
					} else if stop.Load() {
						end = 'c'
					}
					setMu[id].Lock()
					for n := firstSeq; n < lastSeq; n++ {
						endOf[id][n] = end
					}
					setMu[id].Unlock()
				}
				if moved {
					// Told to go: the old connection gets its last echoes and the server's
					// close in the background while the next messages go on a new one.
					wg.Add(1)
					go func(conn *websocket.Conn, lastSeq int) {
						defer wg.Done()
						finish(conn, lastSeq)
					}(conn, seq)
					continue
				}
				finish(conn, seq)
			}
		}(i)
	}
	connectedOnce.Wait()
	start := time.Now()
	if *readyFile != "" {
		os.WriteFile(*readyFile, []byte(strconv.FormatInt(start.UnixMilli(), 10)), 0o644)
	}
	time.Sleep(*duration)
	// Each client stops sending and closes: the echo of every message it sent comes back
	// before the server's answer to that close (one connection, in order).
	stop.Store(true)
	close(stopped)
	wg.Wait()

	lost := 0
	lostBy := map[string]int{}
	for i := range sentSets {
		for n := range sentSets[i] {
			if !echoSets[i][n] {
				lost++
				switch endOf[i][n] {
				case 's':
					lostBy["server_closed"]++
				case 'c':
					lostBy["client_closed_at_end"]++
				default:
					lostBy["other"]++
				}
			}
		}
	}
	sort.Float64s(rtts)
	pct := func(p float64) float64 {
		if len(rtts) == 0 {
			return -1
		}
		return rtts[int(p*float64(len(rtts)-1))]
	}
	codes := map[string]int{}
	notices, moves := 0, 0
	for _, c := range closes {
		if c.code == 0 {
			moves++
			continue
		}
		codes[strconv.Itoa(c.code)]++
		if c.notice {
			notices++
		}
	}
	if *closesFile != "" {
		f, err := os.Create(*closesFile)
		if err == nil {
			for _, c := range closes {
				notice := 0
				if c.notice {
					notice = 1
				}
				fmt.Fprintf(f, "%d %d %d %d\n", c.at.UnixMilli(), c.code, notice, c.client)
			}
			f.Close()
		}
	}
	if *summary {
		out := map[string]any{
			"clients": *clients, "heed_notice": *heedNotice, "sent": t.sent, "echoed": t.echoed, "lost": lost, "lost_by": lostBy, "connects": t.connects,
			"dial_errors": t.dialErrors, "read_errors": t.readErrors, "abnormal_closes": t.abnormal,
			"server_closes": len(closes) - moves, "moves": moves, "close_codes": codes, "closes_after_notice": notices,
			"seconds": time.Since(start).Seconds(),
			"echo_p50_ms": pct(0.5), "echo_p99_ms": pct(0.99), "echo_max_ms": pct(1),
		}
		b, _ := json.Marshal(out)
		fmt.Println(string(b))
	}
}
