package interleave

import (
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/petermattis/goid"
)

// goid reads the goroutine id from the runtime's g struct, at an offset it knows per Go
// version: checked here against the id the runtime prints in a stack trace's header
// ("goroutine 42 [running]:"), so a Go release that moves it fails this test rather than
// making seeds replay differently.
func TestGoroutineIDsAreTheRuntimes(t *testing.T) {
	var wg sync.WaitGroup
	for range 100 {
		wg.Go(func() {
			var buf [64]byte
			f := strings.Fields(string(buf[:runtime.Stack(buf[:], false)]))
			want, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Errorf("stack header %q: %v", f, err)
				return
			}
			if got := goid.Get(); got != want {
				t.Errorf("goid.Get() = %d, the runtime says %d", got, want)
			}
		})
	}
	wg.Wait()
}
