// Command promql-check parses PromQL expressions with Prometheus's own parser.
//
// It reads a JSON array of expressions on stdin and writes a JSON array with, for each, the
// parse error (empty when it parses) and the metric names its selectors use, so a test can
// check both that every query is valid and that it names only metrics the operator defines.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type result struct {
	Expr    string   `json:"expr"`
	Error   string   `json:"error"`
	Metrics []string `json:"metrics"`
}

func check(expr string) result {
	out := result{Expr: expr, Metrics: []string{}}
	parsed, err := parser.NewParser(parser.Options{}).ParseExpr(expr)
	if err != nil {
		out.Error = err.Error()
		return out
	}
	seen := map[string]bool{}
	parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
		if selector, ok := node.(*parser.VectorSelector); ok {
			name := selector.Name
			for _, matcher := range selector.LabelMatchers {
				if matcher.Name == labels.MetricName && matcher.Type == labels.MatchEqual {
					name = matcher.Value
				}
			}
			if name == "" {
				out.Error = fmt.Sprintf("a selector without a metric name: %s", selector)
			}
			seen[name] = true
		}
		return nil
	})
	for name := range seen {
		out.Metrics = append(out.Metrics, name)
	}
	sort.Strings(out.Metrics)
	return out
}

func main() {
	var exprs []string
	if err := json.NewDecoder(os.Stdin).Decode(&exprs); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check: stdin must be a JSON array of strings:", err)
		os.Exit(2)
	}
	results := make([]result, 0, len(exprs))
	for _, expr := range exprs {
		results = append(results, check(expr))
	}
	if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
		fmt.Fprintln(os.Stderr, "promql-check:", err)
		os.Exit(2)
	}
}
