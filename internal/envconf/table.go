package envconf

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"
)

// Var declares one environment variable: the one place its name, its
// default, its range and its meaning are written.
type Var struct {
	Name string
	// Default is the value when the variable is unset or empty: a string,
	// int, float64, bool or time.Duration, of the kind the Reader reads it
	// as; nil means empty (none).
	Default any
	// Min and Max bound an int, float64 or time.Duration.
	Min, Max any
	// OneOf lists the allowed values of a choice, or a URL's schemes.
	OneOf []string
	// Shown is the default as -h and the docs show it, when it is worked
	// out at start-up (the host's name, another variable's value).
	Shown string
	Help  string
}

// Table is a command's variables.
type Table []Var

// Join returns the variables of t and others, as one table (a command's
// own and those of the shared packages it reads through, such as Redis's).
func Join(t Table, others ...Table) Table {
	out := slices.Clone(t)
	for _, o := range others {
		out = append(out, o...)
	}
	return out
}

// Var is name's declaration (the zero Var when t has none).
func (t Table) Var(name string) Var {
	for _, v := range t {
		if v.Name == name {
			return v
		}
	}
	return Var{}
}

// DefaultText is the default as a user writes it ("" for none).
func (v Var) DefaultText() string {
	if v.Shown != "" {
		return v.Shown
	}
	switch d := v.Default.(type) {
	case nil:
		return ""
	case string:
		return d
	case int:
		return strconv.Itoa(d)
	case float64:
		return strconv.FormatFloat(d, 'g', -1, 64)
	case bool:
		return strconv.FormatBool(d)
	case time.Duration:
		return formatDuration(d)
	}
	return fmt.Sprint(v.Default)
}

// RangeText says which values are allowed, in words.
func (v Var) RangeText() string {
	switch lo := v.Min.(type) {
	case int:
		return fmt.Sprintf("%d…%d", lo, v.Max.(int))
	case float64:
		return fmt.Sprintf("%g…%g", lo, v.Max.(float64))
	case time.Duration:
		return fmt.Sprintf("%s…%s", formatDuration(lo), formatDuration(v.Max.(time.Duration)))
	}
	if len(v.OneOf) > 0 {
		return strings.Join(v.OneOf, " | ")
	}
	if _, ok := v.Default.(bool); ok {
		return "true | false"
	}
	return ""
}

// formatDuration writes d as the docs do: whole seconds as 300s (not
// 5m0s), whole milliseconds as 25ms.
func formatDuration(d time.Duration) string {
	switch {
	case d == 0:
		return "0"
	case d%time.Hour == 0 && d >= 24*time.Hour:
		return strconv.FormatInt(int64(d/time.Hour), 10) + "h"
	case d%time.Second == 0:
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	case d%time.Millisecond == 0:
		return strconv.FormatInt(int64(d/time.Millisecond), 10) + "ms"
	}
	return d.String()
}

// Usage writes the table as -h prints it: name, default, meaning, range.
func (t Table) Usage(w io.Writer, command string) {
	fmt.Fprintf(w, "usage: %s\n\n%s is configured by these environment variables (docs/configuration.md has more on each):\n\n", command, command)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "VARIABLE\tDEFAULT\tMEANING [RANGE]")
	for _, v := range t {
		def := v.DefaultText()
		if def == "" {
			def = "-"
		}
		help := v.Help
		if r := v.RangeText(); r != "" {
			help += " [" + r + "]"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", v.Name, def, help)
	}
	tw.Flush()
}

// HelpAsked reports whether args (os.Args[1:]) ask for the usage.
func HelpAsked(args []string) bool {
	return len(args) > 0 && (args[0] == "-h" || args[0] == "--help" || args[0] == "-help" || args[0] == "help")
}

// PrintUsage writes t's usage to stdout and exits 0: main's answer to -h.
func PrintUsage(t Table, command string) {
	t.Usage(os.Stdout, command)
	os.Exit(0)
}

var docRow = regexp.MustCompile("^\\|\\s*(.+?)\\s*\\|\\s*(.*?)\\s*\\|")
var backticked = regexp.MustCompile("`([^`]*)`")

// DocProblems checks a markdown document's section (the lines under the
// heading section, to the next heading) against t: every variable in t
// has a row, every row's variables are in t, and a row whose default cell
// starts with a `value` shows the table's default. It returns what
// differs, one line each.
func (t Table) DocProblems(markdown, section string) []string {
	var rows = map[string]string{} // variable -> default cell
	in := false
	for _, line := range strings.Split(markdown, "\n") {
		if strings.HasPrefix(line, "#") {
			in = strings.TrimSpace(strings.TrimLeft(line, "#")) == section
			continue
		}
		m := docRow.FindStringSubmatch(line)
		if !in || m == nil {
			continue
		}
		for _, name := range backticked.FindAllStringSubmatch(m[1], -1) {
			rows[name[1]] = m[2]
		}
	}
	var out []string
	if len(rows) == 0 {
		return []string{fmt.Sprintf("no table under %q", section)}
	}
	seen := map[string]bool{}
	for _, v := range t {
		seen[v.Name] = true
		cell, ok := rows[v.Name]
		if !ok {
			out = append(out, fmt.Sprintf("%s: declared, not documented under %q", v.Name, section))
			continue
		}
		m := backticked.FindStringSubmatch(cell)
		if v.Shown == "" && m != nil && strings.Index(cell, "`") == 0 && m[1] != v.DefaultText() {
			out = append(out, fmt.Sprintf("%s: documented default %q, declared %q", v.Name, m[1], v.DefaultText()))
		}
	}
	for name := range rows {
		if !seen[name] {
			out = append(out, fmt.Sprintf("%s: documented under %q, not declared", name, section))
		}
	}
	slices.Sort(out)
	return out
}
