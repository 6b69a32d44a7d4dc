// logqlcheck parses LogQL queries with Loki's own parser: each argument is
// a file of queries, one per line; the first one that does not parse is
// printed with the parser's message, and the exit status is 1.
package main

import (
	"bufio"
	"fmt"
	"os"

	"github.com/grafana/loki/v3/pkg/logql/syntax"
)

func main() {
	failed := false
	checked := 0
	for _, path := range os.Args[1:] {
		f, err := os.Open(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		s := bufio.NewScanner(f)
		s.Buffer(make([]byte, 1<<20), 1<<20)
		for line := 1; s.Scan(); line++ {
			q := s.Text()
			if q == "" {
				continue
			}
			if _, err := syntax.ParseExpr(q); err != nil {
				fmt.Printf("%s:%d: %v\n  %s\n", path, line, err, q)
				failed = true
			}
			checked++
		}
		f.Close()
	}
	if failed {
		os.Exit(1)
	}
	fmt.Printf("logqlcheck: %d LogQL queries parse\n", checked)
}
