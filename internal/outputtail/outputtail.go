// Package outputtail keeps the end of a program's output for an error message: what went wrong
// is said last, and the whole output would drown the message. The installer, the local cloud,
// Ansible's runner, the test hosts and the registry's test server all report failures with it.
package outputtail

// Buffer is an io.Writer that keeps the last Max bytes written to it.
type Buffer struct {
	Max int
	b   []byte
}

// Write keeps the end of p and never fails.
func (t *Buffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > t.Max {
		t.b = t.b[len(t.b)-t.Max:]
	}
	return len(p), nil
}

// String is what is kept.
func (t *Buffer) String() string { return string(t.b) }

// Of is the last n bytes of b.
func Of(b []byte, n int) string {
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}
