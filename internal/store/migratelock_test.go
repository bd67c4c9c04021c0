package store_test

import (
	"context"
	"path/filepath"
	"sync"
	"testing"

	"github.com/labplane/labplane/internal/store"
)

// Several processes (here: goroutines with their own connections) opening a new SQLite file
// at once must all succeed: the first migrates, the others wait and find it done.
func TestConcurrentOpenOfANewSQLiteFile(t *testing.T) {
	for round := range 5 {
		path := filepath.Join(t.TempDir(), "labplane.db")
		var wg sync.WaitGroup
		errs := make([]error, 8)
		for i := range errs {
			wg.Go(func() {
				s, err := store.Open(context.Background(), store.SQLite, path)
				if err == nil {
					s.Close()
				}
				errs[i] = err
			})
		}
		wg.Wait()
		for i, err := range errs {
			if err != nil {
				t.Fatalf("round %d, opener %d: %v", round, i, err)
			}
		}
	}
}
