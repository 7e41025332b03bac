package testenv

import (
	"bufio"
	"errors"
	"os"
	"path/filepath"
	"strings"
)

// QuickstartBlock returns the commands (split into fields) of the ```sh block
// that follows the `<!-- quickstart` comment of docs/install.md under root.
// The Kubernetes suites (test/e2e/k8s on kwok, test/e2e/pods on a real node)
// run that block, each with its own documented rewrites.
func QuickstartBlock(root string) ([][]string, error) {
	f, err := os.Open(filepath.Join(root, "docs", "install.md"))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	var marked, in bool
	var cmds [][]string
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "<!-- quickstart"):
			marked = true
		case marked && !in && line == "```sh":
			in = true
		case in && line == "```":
			return cmds, nil
		case in && line != "" && !strings.HasPrefix(line, "#"):
			cmds = append(cmds, strings.Fields(line))
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, errors.New("docs/install.md has no ```sh block after a <!-- quickstart comment")
}
