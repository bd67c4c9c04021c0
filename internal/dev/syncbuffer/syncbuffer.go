// Package syncbuffer is a bytes.Buffer safe for concurrent use: the log sink a test reads
// while the servers, jobs or commands it started write.
package syncbuffer

import (
	"bytes"
	"sync"
)

// Buffer is written by any goroutine and read by the test. The zero value is ready.
type Buffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *Buffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String is everything written so far.
func (s *Buffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
