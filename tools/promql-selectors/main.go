// promql-selectors reads PromQL expressions, one JSON string per line on stdin, and prints for
// each a JSON object on stdout: the metric names and label matchers of every vector and matrix
// selector in it, or the parse error. Prometheus' own parser does the work, so what this reports
// is exactly what Prometheus would query.
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"

	"github.com/prometheus/prometheus/model/labels"
	"github.com/prometheus/prometheus/promql/parser"
)

type selector struct {
	Metric string            `json:"metric"`
	Labels map[string]string `json:"labels"`
}

type result struct {
	Selectors []selector `json:"selectors"`
	Error     string     `json:"error,omitempty"`
}

func main() {
	promql := parser.NewParser(parser.Options{})
	in := bufio.NewScanner(os.Stdin)
	in.Buffer(make([]byte, 1<<20), 1<<24)
	out := json.NewEncoder(os.Stdout)
	for in.Scan() {
		var expr string
		if err := json.Unmarshal(in.Bytes(), &expr); err != nil {
			fmt.Fprintln(os.Stderr, "promql-selectors: each input line must be a JSON string:", err)
			os.Exit(2)
		}
		res := result{Selectors: []selector{}}
		parsed, err := promql.ParseExpr(expr)
		if err != nil {
			res.Error = err.Error()
		} else {
			parser.Inspect(parsed, func(node parser.Node, _ []parser.Node) error {
				if vs, ok := node.(*parser.VectorSelector); ok {
					sel := selector{Metric: vs.Name, Labels: map[string]string{}}
					for _, m := range vs.LabelMatchers {
						if m.Name == labels.MetricName {
							if m.Type == labels.MatchEqual {
								sel.Metric = m.Value
							}
							continue
						}
						sel.Labels[m.Name] = m.Type.String() + m.Value
					}
					res.Selectors = append(res.Selectors, sel)
				}
				return nil
			})
		}
		if err := out.Encode(res); err != nil {
			fmt.Fprintln(os.Stderr, "promql-selectors:", err)
			os.Exit(1)
		}
	}
	if err := in.Err(); err != nil {
		fmt.Fprintln(os.Stderr, "promql-selectors:", err)
		os.Exit(1)
	}
}
