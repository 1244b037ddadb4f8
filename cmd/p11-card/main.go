// Command p11-card inspects smart-card readers and tokens, drives the virtual test rig and
// manages PINs, keys and certificates through the same drivers the PKCS#11 module uses.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sort"
	"strings"
	"syscall"
)

// command is one subcommand. Each lives in its own file and registers itself from init.
type command struct {
	name    string
	summary string // one line for the command list
	usage   string // the arguments after the name: "[--json]"
	help    string // paragraphs shown by `p11-card help NAME`
	run     func(ctx context.Context, e *env, args []string) error
}

// env is what a command writes to; tests give their own buffers.
type env struct {
	stdout, stderr io.Writer
}

var commands = map[string]*command{}

func register(c *command) {
	if _, dup := commands[c.name]; dup {
		panic("p11-card: command registered twice: " + c.name)
	}
	commands[c.name] = c
}

// usageError is a mistake in the command line: the command's usage is printed with it.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	code := run(ctx, &env{stdout: os.Stdout, stderr: os.Stderr}, os.Args[1:])
	stop()
	os.Exit(code)
}

func run(ctx context.Context, e *env, args []string) int {
	if len(args) == 0 || args[0] == "-h" || args[0] == "--help" || args[0] == "help" && len(args) == 1 {
		printOverview(e.stdout)
		return 0
	}
	if args[0] == "help" {
		c, ok := commands[args[1]]
		if !ok {
			fmt.Fprintf(e.stderr, "p11-card: no command %q; `p11-card help` lists them\n", args[1])
			return 2
		}
		printCommand(e.stdout, c)
		return 0
	}
	c, ok := commands[args[0]]
	if !ok {
		fmt.Fprintf(e.stderr, "p11-card: no command %q; `p11-card help` lists them\n", args[0])
		return 2
	}
	for _, a := range args[1:] {
		if a == "-h" || a == "--help" {
			printCommand(e.stdout, c)
			return 0
		}
	}
	if err := c.run(ctx, e, args[1:]); err != nil {
		fmt.Fprintf(e.stderr, "p11-card %s: %v\n", c.name, err)
		if _, ok := err.(usageError); ok {
			fmt.Fprintf(e.stderr, "usage: p11-card %s %s\n", c.name, c.usage)
			return 2
		}
		return 1
	}
	return 0
}

// newFlags makes a flag set whose errors come back as usage errors instead of exiting.
func newFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// parseFlags parses and turns flag errors into usage errors.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		return usageError{err.Error()}
	}
	return nil
}

func printOverview(w io.Writer) {
	fmt.Fprint(w, `p11-card: smart cards and USB tokens (PIV, YubiKey, OpenPGP) for PKCS#11 applications.

The PKCS#11 module (p11-card-pkcs11.so) is what applications load; this command looks at the
same readers and cards from a shell, manages PINs and keys, and runs a virtual card rig for
trying everything without a card.

Commands:
`)
	names := make([]string, 0, len(commands))
	for n := range commands {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		fmt.Fprintf(w, "  %-10s %s\n", n, commands[n].summary)
	}
	fmt.Fprint(w, `
Run 'p11-card help COMMAND' for a command's options.
Set P11CARD_DEBUG=pcsc,apdu to trace card traffic on stderr (PINs are always redacted).
`)
}

func printCommand(w io.Writer, c *command) {
	fmt.Fprintf(w, "usage: p11-card %s %s\n\n%s\n", c.name, c.usage, strings.TrimSpace(c.help))
}
