// Command baregin is the ceiling for receiver benchmarks: a gin handler that
// reads the request body and answers 202, nothing else. BENCHMARKS.md puts
// the receiver's numbers next to this one, measured in the same run.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"

	"github.com/gin-gonic/gin"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8099", "listen address")
	flag.Parse()
	gin.SetMode(gin.ReleaseMode)
	r := gin.New()
	r.POST("/webhooks/:source", func(c *gin.Context) {
		if _, err := io.ReadAll(c.Request.Body); err != nil {
			c.Status(http.StatusBadRequest)
			return
		}
		c.JSON(http.StatusAccepted, gin.H{"status": "accepted"})
	})
	log.Fatal(http.ListenAndServe(*addr, r))
}
