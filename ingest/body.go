package ingest

import (
	"errors"
	"io"
	"math/bits"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Request bodies are read into pooled buffers that grow with the bytes
// that arrive, never with what Content-Length claims: the claim alone
// reserves at most PreAuthConfig.ClaimBytes, and each growth doubles the
// buffer only once it is full. A body holds its bytes against the
// receiver's bodyBudget until its signature is verified, so the memory
// that unverified requests can hold is bounded whatever they claim or how
// slowly they send. Before this, a buffer of the claimed length was
// allocated before a byte was read: 100 connections claiming 1 MiB and
// sending one byte each held 100 MiB for the server's read timeout.
//
// Buffers are size classes of powers of two from 1 KiB to 1 MiB, each a
// sync.Pool; larger ones (sources may allow up to 64 MiB) are not pooled.
// A buffer goes back to its pool when its request is answered, unless a
// record carrying it may still be in the producer (a produce the request
// stopped waiting for).

const (
	minBodyClass = 10 // 1 KiB
	maxBodyClass = 20 // 1 MiB
)

// bodyBuf is a pooled buffer; the pools hold pointers so that putting one
// back allocates nothing.
type bodyBuf struct{ b []byte }

var bodyPools [maxBodyClass - minBodyClass + 1]sync.Pool

func init() {
	for i := range bodyPools {
		size := 1 << (minBodyClass + i)
		bodyPools[i].New = func() any { return &bodyBuf{b: make([]byte, 0, size)} }
	}
}

// bodyClass is the class of the smallest buffer that holds n bytes.
func bodyClass(n int) int {
	if n <= 1<<minBodyClass {
		return minBodyClass
	}
	return bits.Len(uint(n - 1))
}

// bodySize is the capacity of the buffer that holds n bytes: its class,
// or n itself past the largest class (those are not pooled).
func bodySize(n int64) int64 {
	if n > 1<<maxBodyClass {
		return n
	}
	return 1 << bodyClass(int(n))
}

// getBodyBuf returns an empty buffer of capacity bodySize(size).
func getBodyBuf(size int64) *bodyBuf {
	if size > 1<<maxBodyClass {
		return &bodyBuf{b: make([]byte, 0, size)}
	}
	bb := bodyPools[bodyClass(int(size))-minBodyClass].Get().(*bodyBuf)
	bb.b = bb.b[:0]
	return bb
}

func putBodyBuf(bb *bodyBuf) {
	c := cap(bb.b)
	if c < 1<<minBodyClass || c > 1<<maxBodyClass || c&(c-1) != 0 {
		return
	}
	bodyPools[bits.Len(uint(c))-1-minBodyClass].Put(bb)
}

// bodyBudget bounds the bytes held by request bodies not verified yet,
// over all requests of a receiver.
type bodyBudget struct {
	open     int64 // what any request may fill the budget to
	reserved int64 // what a request of a recently verified address may fill it to
	bytes    atomic.Int64
	bodies   atomic.Int64 // requests holding bytes of the budget
}

// take reserves n bytes, up to open, or up to the whole budget when the
// request's address delivered its source a new event recently (asked
// only then). It holds nothing until it decides: adding n first and
// taking it back on refusal made every refused anonymous body hold its
// bytes meanwhile (while its address was looked up, under a lock a flood
// keeps busy), and a verified address's body was refused with the
// reserve free.
func (b *bodyBudget) take(n int64, addrs *addressTable, addr netip.Addr) bool {
	asked, verified := false, false
	for {
		held := b.bytes.Load()
		total := held + n
		if total > b.open {
			if total > b.reserved || addrs == nil {
				return false
			}
			if !asked {
				asked, verified = true, addrs.recentlyVerified(addr, time.Now())
			}
			if !verified {
				return false
			}
		}
		if b.bytes.CompareAndSwap(held, total) {
			unverifiedBodyBytes.Add(float64(n))
			return true
		}
	}
}

func (b *bodyBudget) give(n int64) {
	b.bytes.Add(-n)
	unverifiedBodyBytes.Sub(float64(n))
}

var (
	errTooLarge   = errors.New("body too large")
	errOverBudget = errors.New("too many unverified bodies in flight")
)

// body is a request's body while it is read and checked.
type body struct {
	budget *bodyBudget
	buf    *bodyBuf
	held   int64 // bytes of the budget held until verify
	// The request's source's addresses and its client's address, for the
	// part of the budget held back for verified addresses.
	addrs *addressTable
	addr  netip.Addr
}

// read reads rd, at most limit bytes, into a buffer that grows as bytes
// arrive; contentLength is the request's (-1: unknown) and claim the most
// it alone may reserve. It returns errTooLarge past limit, errOverBudget
// when the budget has no room for the next growth, or rd's error.
func (b *body) read(rd io.Reader, contentLength, limit int64, claim int) error {
	if contentLength == 0 {
		return nil
	}
	// Unknown length: room for one byte past limit tells an oversized
	// body. Known: the server ends the body there.
	end := limit + 1
	if contentLength > 0 {
		end = contentLength
	}
	if !b.grow(min(int64(claim), end)) {
		return errOverBudget
	}
	for {
		buf := b.buf.b
		if int64(len(buf)) == end {
			break
		}
		if len(buf) == cap(buf) && !b.grow(min(2*int64(cap(buf)), end)) {
			return errOverBudget
		}
		buf = b.buf.b
		room := buf[len(buf):min(int64(cap(buf)), end)]
		n, err := rd.Read(room)
		b.buf.b = buf[:len(buf)+n]
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	if int64(len(b.buf.b)) > limit {
		return errTooLarge
	}
	return nil
}

// grow makes the buffer hold at least n bytes, taking what it adds from
// the budget first.
func (b *body) grow(n int64) bool {
	n = max(n, 1)
	old := 0
	if b.buf != nil {
		old = cap(b.buf.b)
		if int64(old) >= n {
			return true
		}
	}
	size := bodySize(n)
	if !b.budget.take(size-int64(old), b.addrs, b.addr) {
		return false
	}
	if b.held == 0 {
		b.budget.bodies.Add(1)
	}
	b.held += size - int64(old)
	nb := getBodyBuf(size)
	if b.buf != nil {
		nb.b = append(nb.b, b.buf.b...)
		putBodyBuf(b.buf)
	}
	b.buf = nb
	return true
}

func (b *body) bytes() []byte {
	if b.buf == nil {
		return nil
	}
	return b.buf.b
}

// verified gives the body's bytes back to the budget: the signature
// vouches for the request now.
func (b *body) verified() {
	if b.held > 0 {
		b.budget.give(b.held)
		b.budget.bodies.Add(-1)
		b.held = 0
	}
}

// release ends the body: its budget goes back, and its buffer to the pool
// unless keep says a record may still hold it.
func (b *body) release(keep bool) {
	b.verified()
	if b.buf != nil && !keep {
		putBodyBuf(b.buf)
	}
	b.buf = nil
}
