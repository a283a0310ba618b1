// Peer for Benchmarks/run.sh: a gin server on cloudflare/tableflip.
//
// GET /hello answers {"message":…,"ver":"1","pid":<pid>} like Baton's hello. SIGHUP calls
// upg.Upgrade() (tableflip starts a new copy of argv[0] on the same listener; this process exits
// once the new one is ready); the new process writes its pid to -pid-file. Built in GOPATH mode
// from Debian's golang-github-cloudflare-tableflip-dev and golang-github-gin-gonic-gin-dev.
package main

import (
	"context"
	"flag"
	"log"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/cloudflare/tableflip"
	"github.com/gin-gonic/gin"
)

type answer struct {
	Message string `json:"message"`
	Ver     string `json:"ver"`
	Pid     int    `json:"pid"`
}

func main() {
	listen := flag.String("listen", "127.0.0.1:8080", "address to listen on")
	pidFile := flag.String("pid-file", "", "path of the pid file (written when ready)")
	flag.Parse()
	log.SetPrefix("tableflip-gin[" + strconv.Itoa(os.Getpid()) + "] ")

	upg, err := tableflip.New(tableflip.Options{PIDFile: *pidFile})
	if err != nil {
		log.Fatalln("tableflip.New:", err)
	}
	defer upg.Stop()

	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGHUP)
		for range sig {
			if err := upg.Upgrade(); err != nil {
				log.Println("upgrade failed:", err)
			}
		}
	}()

	ln, err := upg.Listen("tcp", *listen)
	if err != nil {
		log.Fatalln("listen:", err)
	}

	gin.SetMode(gin.ReleaseMode)
	r := gin.New() // no logger middleware: a fair comparison with the other servers
	pid := os.Getpid()
	r.GET("/hello", func(c *gin.Context) {
		c.JSON(http.StatusOK, answer{Message: "Hello from tableflip+gin", Ver: "1", Pid: pid})
	})
	server := &http.Server{Handler: r}
	go func() {
		if err := server.Serve(ln); err != http.ErrServerClosed {
			log.Println("serve:", err)
		}
	}()

	if err := upg.Ready(); err != nil {
		log.Fatalln("ready:", err)
	}
	log.Println("ready")
	<-upg.Exit()

	time.AfterFunc(30*time.Second, func() {
		log.Println("graceful shutdown timed out")
		os.Exit(1)
	})
	server.Shutdown(context.Background())
	log.Println("drained, exiting")
}
