// Peer for Benchmarks/run.sh: a gin server on facebookgo/grace (gracehttp).
//
// GET /hello answers {"message":…,"ver":"1","pid":<pid>} like Baton's hello. SIGUSR2 makes
// gracehttp start a new copy of the binary on the inherited listener; the new process SIGTERMs
// its parent once it serves, and the parent drains and exits. Each process writes its pid to
// -pid-file at start. Built in GOPATH mode from Debian's golang-github-facebookgo-grace-dev and
// golang-github-gin-gonic-gin-dev.
package main

import (
	"flag"
	"log"
	"net/http"
	"os"
	"strconv"

	"github.com/facebookgo/grace/gracehttp"
	"github.com/gin-gonic/gin"
)

type answer struct {
	Message string `json:"message"`
	Ver     string `json:"ver"`
	Pid     int    `json:"pid"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	pidFile := flag.String("pid-file", "", "path of the pid file (written at start)")
	flag.Parse()
	pid := os.Getpid()
	logger := log.New(os.Stderr, "grace-gin["+strconv.Itoa(pid)+"] ", log.LstdFlags)
	gracehttp.SetLogger(logger)

	if *pidFile != "" {
		tmp := *pidFile + ".tmp"
		if err := os.WriteFile(tmp, []byte(strconv.Itoa(pid)+"\n"), 0o644); err == nil {
			os.Rename(tmp, *pidFile)
		}
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New() // no logger middleware: a fair comparison with the other servers
	r.GET("/hello", func(c *gin.Context) {
		c.JSON(http.StatusOK, answer{Message: "Hello from grace+gin", Ver: "1", Pid: pid})
	})
	if err := gracehttp.Serve(&http.Server{Addr: *listen, Handler: r}); err != nil {
		logger.Fatalln("serve:", err)
	}
}
