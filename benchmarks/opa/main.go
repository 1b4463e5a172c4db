// Command opa-classify times OPA deciding each request in-process: the Rego module is compiled
// and prepared once (rego.PrepareForEval), then every request is one Eval, timed on its own.
// It reads {"module": "...", "query": "...", "inputs": [...], "warmup": N} on stdin and writes
// {"answers": [...], "nanoseconds": [...]} on stdout, so the Python benchmark checks the answers
// against Handoff's and reports the times beside its own.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"time"

	"github.com/open-policy-agent/opa/v1/rego"
)

type job struct {
	Module string           `json:"module"`
	Query  string           `json:"query"`
	Inputs []map[string]any `json:"inputs"`
	Warmup int              `json:"warmup"`
}

type result struct {
	Answers     []any   `json:"answers"`
	Nanoseconds []int64 `json:"nanoseconds"`
}

func main() {
	var j job
	if err := json.NewDecoder(os.Stdin).Decode(&j); err != nil {
		fail(err)
	}
	ctx := context.Background()
	prepared, err := rego.New(rego.Query(j.Query), rego.Module("handoff.rego", j.Module)).PrepareForEval(ctx)
	if err != nil {
		fail(err)
	}
	eval := func(input map[string]any) any {
		rs, err := prepared.Eval(ctx, rego.EvalInput(input))
		if err != nil {
			fail(err)
		}
		if len(rs) == 0 || len(rs[0].Expressions) == 0 {
			return nil
		}
		return rs[0].Expressions[0].Value
	}
	for i := 0; i < j.Warmup && len(j.Inputs) > 0; i++ {
		eval(j.Inputs[i%len(j.Inputs)])
	}
	out := result{Answers: make([]any, len(j.Inputs)), Nanoseconds: make([]int64, len(j.Inputs))}
	for i, input := range j.Inputs {
		started := time.Now()
		out.Answers[i] = eval(input)
		out.Nanoseconds[i] = time.Since(started).Nanoseconds()
	}
	if err := json.NewEncoder(os.Stdout).Encode(out); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, "opa-classify:", err)
	os.Exit(1)
}
