// Command promql-check checks PromQL with Prometheus's own code.
//
//	promql-check        reads a JSON array of expressions on stdin and writes, for each, the
//	                    parse error (empty when it parses) and the metric names its selectors
//	                    use: every query valid, and naming only metrics the operator defines.
//	promql-check eval   reads {"series": promqltest "load" text, "interval", "end", "rules":
//	                    [{"alert", "expr", "for"}]} and evaluates the alerting rules over the
//	                    series as Prometheus's rule manager would (promtool test rules does the
//	                    same), writing for each rule the steps at which alerts fire and with
//	                    which labels.
package main

import (
	"encoding/json"
	"fmt"
	"os"
	"sort"
	"time"

	"github.com/prometheus/common/model"
	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
	"github.com/prometheus/prometheus/promql/promqltest"
	"github.com/prometheus/prometheus/rules"
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

type evalInput struct {
	Series   string `json:"series"`
	Interval string `json:"interval"`
	End      string `json:"end"`
	Rules    []struct {
		Alert string `json:"alert"`
		Expr  string `json:"expr"`
		For   string `json:"for"`
	} `json:"rules"`
}

type firing struct {
	At     string            `json:"at"`
	Labels map[string]string `json:"labels"`
}

type evalResult struct {
	Alert  string   `json:"alert"`
	Error  string   `json:"error"`
	Firing []firing `json:"firing"`
}

func duration(text string) (time.Duration, error) {
	d, err := model.ParseDuration(text)
	return time.Duration(d), err
}

func eval(input evalInput) ([]evalResult, error) {
	interval, err := duration(input.Interval)
	if err != nil {
		return nil, fmt.Errorf("interval: %w", err)
	}
	end, err := duration(input.End)
	if err != nil {
		return nil, fmt.Errorf("end: %w", err)
	}
	suite, err := promqltest.NewLazyLoader(input.Series, promqltest.LazyLoaderOpts{
		EnableAtModifier: true, EnableNegativeOffset: true,
	})
	if err != nil {
		return nil, fmt.Errorf("series: %w", err)
	}
	defer suite.Close()
	query := rules.EngineQueryFunc(suite.QueryEngine(), suite.Storage())
	alerting := make([]*rules.AlertingRule, 0, len(input.Rules))
	results := make([]evalResult, 0, len(input.Rules))
	for _, rule := range input.Rules {
		results = append(results, evalResult{Alert: rule.Alert, Firing: []firing{}})
		expr, err := parser.NewParser(parser.Options{}).ParseExpr(rule.Expr)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", rule.Alert, err)
		}
		hold := time.Duration(0)
		if rule.For != "" {
			if hold, err = duration(rule.For); err != nil {
				return nil, fmt.Errorf("%s: for: %w", rule.Alert, err)
			}
		}
		r := rules.NewAlertingRule(rule.Alert, expr, hold, 0, labels.EmptyLabels(),
			labels.EmptyLabels(), labels.EmptyLabels(), "", true, nil)
		alerting = append(alerting, r)
	}
	start := time.Unix(0, 0).UTC()
	for ts := start; !ts.After(start.Add(end)); ts = ts.Add(interval) {
		var loadErr error
		suite.WithSamplesTill(ts, func(err error) { loadErr = err })
		if loadErr != nil {
			return nil, loadErr
		}
		for i, r := range alerting {
			if _, err := r.Eval(suite.Context(), 0, ts, query, nil, 0); err != nil {
				results[i].Error = err.Error()
				continue
			}
			for _, alert := range r.ActiveAlerts() {
				if alert.State == rules.StateFiring {
					results[i].Firing = append(results[i].Firing,
						firing{At: ts.Sub(start).String(), Labels: alert.Labels.Map()})
				}
			}
		}
	}
	return results, nil
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "eval" {
		var input evalInput
		if err := json.NewDecoder(os.Stdin).Decode(&input); err != nil {
			fmt.Fprintln(os.Stderr, "promql-check eval: stdin:", err)
			os.Exit(2)
		}
		results, err := eval(input)
		if err != nil {
			fmt.Fprintln(os.Stderr, "promql-check eval:", err)
			os.Exit(1)
		}
		if err := json.NewEncoder(os.Stdout).Encode(results); err != nil {
			fmt.Fprintln(os.Stderr, "promql-check:", err)
			os.Exit(2)
		}
		return
	}
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
