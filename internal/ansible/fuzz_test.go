package ansible

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"reflect"
	"slices"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/labplane/labplane/internal/runs"
)

// FuzzEvents: whatever ansible-playbook writes to stdout (the jsonl callback's events, or
// anything else) and stderr, the decoder never panics and never fails; every line of the run's
// log is one JSON value; the events and the result are the same however the pipe cuts the output;
// a failed or unreachable host's message is trimmed; and the failures are the hosts the recap
// counts as failed or unreachable (or does not list), sorted, each with its last failure.
func FuzzEvents(f *testing.F) {
	const (
		play  = `{"_event":"v2_playbook_on_play_start","_timestamp":"2026-12-05T22:32:08.136550Z","play":{"id":"02fc","name":"Local play"},"tasks":[]}` + "\n"
		task  = `{"_event":"v2_playbook_on_task_start","_timestamp":"2026-12-05T22:32:08.158031Z","hosts":{},"task":{"id":"02fc","name":"Change something"}}` + "\n"
		ok    = `{"_event":"v2_runner_on_ok","_timestamp":"2026-12-05T22:32:09.333058Z","hosts":{"a":{"changed":true,"msg":"","rc":0},"b":{"changed":false,"stat":{"exists":true}}},"task":{"name":"Change something"}}` + "\n"
		fail  = `{"_event":"v2_runner_on_failed","_timestamp":"2026-12-05T22:32:10.363375Z","hosts":{"b":{"changed":false,"failed":true,"msg":"non-zero return code","rc":1,"stderr":"  boom \n"}},"task":{"name":"Fail"}}` + "\n"
		items = `{"_event":"v2_runner_on_failed","hosts":{"a":{"failed":true,"msg":"One or more items failed","results":[{"msg":"All items completed"},{"msg":"item 2","results":[{"stderr":"deep"}]}]}},"task":{"name":"Loop"}}` + "\n"
		hide  = `{"_event":"v2_runner_on_failed","hosts":{"hidden":{"censored":"the output has been hidden","failed":true}},"task":{"name":"Hide a secret"}}` + "\n"
		unrch = `{"_event":"v2_runner_on_unreachable","hosts":{"c":{"msg":{"error":"ssh: connect to host c port 22: Connection refused"},"unreachable":true}},"task":{"name":"Gather"}}` + "\n"
		stats = `{"_event":"v2_playbook_on_stats","stats":{"a":{"changed":1,"failures":0,"ignored":1,"ok":3,"rescued":0,"skipped":2,"unreachable":0},"b":{"failures":1},"c":{"unreachable":1}}}` + "\n"
	)
	f.Add(play+task+ok+fail+items+hide+unrch+stats, "")
	f.Add(play+task+fail+unrch, "[WARNING]: interrupted\n") // no recap: every host that failed
	f.Add("{\n  \"_event\": \"v2_runner_on_failed\",\n  \"hosts\": {\"a\": {\"msg\": 42}}\n}\n", "")
	f.Add("PLAY [all] ****\n"+play, "ERROR! the playbook could not be found\n")
	f.Add(play+"\x00\xff\a {", "\xff\xfe")
	f.Add(`{"_event":"v2_playbook_on_stats","stats":{"a":"nope","b":{"failures":"1"}}} [1, "x", null] {"hosts":[]}`, "")
	f.Fuzz(func(t *testing.T, stdout, stderr string) {
		type run struct {
			events []Event
			res    Result
			log    string // of stdout: stderr's lines follow the reads
		}
		decode := func(cut func(io.Reader) io.Reader) run {
			var r run
			var log bytes.Buffer
			s := newStream(func(e Event) { r.events = append(r.events, e) }, &log)
			if err := s.Print(context.Background(), cut(strings.NewReader(stdout)), stdoutSink{}); err != nil {
				t.Fatalf("stdout: %v", err)
			}
			r.log = log.String()
			if err := s.Print(context.Background(), cut(strings.NewReader(stderr)), stderrSink{}); err != nil {
				t.Fatalf("stderr: %v", err)
			}
			s.finish()
			r.res = s.res
			for i, line := range strings.Split(strings.TrimSuffix(log.String(), "\n"), "\n") {
				if log.Len() > 0 && !json.Valid([]byte(line)) {
					t.Fatalf("log line %d is not one JSON value: %q", i+1, line)
				}
			}
			return r
		}
		whole := decode(func(r io.Reader) io.Reader { return r })
		bytewise := decode(iotest.OneByteReader)
		if !reflect.DeepEqual(whole, bytewise) {
			t.Fatalf("read whole and a byte at a time, the same output decodes differently:\n%+v\n%+v", whole, bytewise)
		}

		last := map[string]runs.Failure{}
		for _, e := range whole.events {
			switch e.Kind {
			case PlayStart, TaskStart, Skipped:
			case OK, Changed:
				continue
			case Recap:
				if r, ok := whole.res.Recap[e.Host]; e.Recap == nil || !ok || *e.Recap != r {
					t.Errorf("recap event %+v, the result's recap %+v", e, r)
				}
			case Failed, Unreachable:
				if e.Msg != strings.TrimSpace(e.Msg) {
					t.Errorf("%s on %s: message %q is not trimmed", e.Kind, e.Host, e.Msg)
				}
				last[e.Host] = runs.Failure{Host: e.Host, Task: e.Task, Msg: e.Msg, Unreachable: e.Kind == Unreachable}
			default:
				t.Fatalf("an event of no kind labplane knows: %+v", e)
			}
			if e.Result != nil {
				t.Errorf("a %s event with a result: %+v", e.Kind, e)
			}
		}
		var want []runs.Failure
		for h, fl := range last {
			if r, recapped := whole.res.Recap[h]; !recapped || r.Failed > 0 || r.Unreachable > 0 {
				want = append(want, fl)
			}
		}
		slices.SortFunc(want, func(a, b runs.Failure) int { return strings.Compare(a.Host, b.Host) })
		if !slices.Equal(whole.res.Failures, want) {
			t.Fatalf("failures %+v, want %+v (recap %+v)", whole.res.Failures, want, whole.res.Recap)
		}
		if err := whole.res.Err(); len(want) > 0 && !errors.Is(err, ErrHostsFailed) {
			t.Errorf("failures %+v, and Err() = %v", want, err)
		}
	})
}
