package bench

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"time"
)

// `imkube bench fanout` (issue 21): a group with every member online, one
// of them sending to it, side by side with the Centrifugo peer
// (one channel, history on and off). imkube runs once per diffusion mode:
// write (the group is under imkube's read-diffusion threshold: an inbox row
// and a msg frame per member) and read (the threshold is set below the
// group's size: the message is stored once and members get a notify frame
// with the conversation seq, which the sender's ack maps back to the send).
// Centrifugo has no such modes: its rows are measured once per size and
// both imkube modes are compared with them.

// fanoutRate is the default publish rate for a group size: about 10,000
// deliveries offered per second.
func fanoutRate(members int) int { return max(1, 10000/members) }

// BenchFanout is `imkube bench fanout`.
func BenchFanout(ctx context.Context, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench fanout", flag.ContinueOnError)
	fs.SetOutput(out)
	var v versusFlags
	v.register(fs)
	sizes := fs.String("members", "200,2000,10000", "group sizes, comma-separated, one table each: every member online, one of them sends")
	mode := fs.String("mode", "both", "imkube diffusion mode: write, read or both")
	rate := fs.Int("rate", 0, "messages per second to the group (0: 10,000 deliveries per second offered: 50, 5 and 1 msg/s at 200, 2,000 and 10,000)")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the measured phase")
	d := fs.Duration("duration", 10*time.Second, "measured phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var members []int
	for _, f := range strings.Split(*sizes, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 2 {
			return fmt.Errorf("bench fanout: -members %q: want group sizes >= 2 separated by commas", *sizes)
		}
		members = append(members, n)
	}
	modes, err := fanoutModes(*mode)
	if err != nil {
		return err
	}
	if *rate < 0 {
		return errors.New("bench fanout: -rate must be >= 0")
	}
	return runFanout(ctx, out, &v, "fanout", members, modes, *rate, *warmup, *d)
}

func fanoutModes(mode string) ([]string, error) {
	switch mode {
	case "write", "read":
		return []string{mode}, nil
	case "both":
		return []string{"write", "read"}, nil
	}
	return nil, fmt.Errorf("bench fanout: -mode %q: want write, read or both", mode)
}

// BenchGroup is `imkube bench group`, the fan-out scenario at one size
// under its earlier flags (-members, -read-diffusion).
func BenchGroup(ctx context.Context, args []string, out io.Writer, log *slog.Logger) error {
	fs := flag.NewFlagSet("bench group", flag.ContinueOnError)
	fs.SetOutput(out)
	var v versusFlags
	v.register(fs)
	members := fs.Int("members", 200, "group members (all online; one of them sends)")
	rate := fs.Int("rate", 50, "messages per second to the group")
	readDiffusion := fs.Bool("read-diffusion", false, "imkube: store each message once and push notify frames (default: write diffusion, an inbox row per member)")
	warmup := fs.Duration("warmup", 2*time.Second, "load before the measured phase")
	d := fs.Duration("duration", 10*time.Second, "measured phase")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *members < 2 || *rate < 1 {
		return errors.New("bench group: -members must be >= 2 and -rate >= 1")
	}
	mode := "write"
	if *readDiffusion {
		mode = "read"
	}
	return runFanout(ctx, out, &v, "group", []int{*members}, []string{mode}, *rate, *warmup, *d)
}

// fanoutRow is one measured row: a system at a size (imkube: in a mode).
type fanoutRow struct {
	members int
	name    string // "imkube dev write", "centrifugo history", ...
	res     result
}

func runFanout(ctx context.Context, out io.Writer, v *versusFlags, scenario string, sizes []int, modes []string, rate int,
	warmup, d time.Duration) error {
	env, systems, reexec, err := v.setup(out, slices.Max(sizes))
	if reexec || err != nil {
		return err
	}
	defer os.RemoveAll(env.dir)
	var all []fanoutRow
	for i, members := range sizes {
		r := rate
		if r == 0 {
			r = fanoutRate(members)
		}
		if i > 0 {
			fmt.Fprintln(out)
		}
		header(out, scenario, fmt.Sprintf("a %d-member group, all online, %d recipients, %d msg/s (%d deliveries/s offered), imkube %s diffusion, %v measured",
			members, members-1, r, r*(members-1), strings.Join(modes, " and "), d), env)
		users := userIDs(members)
		res := map[string]result{}
		var names []string
		for _, sys := range systems {
			runs := []string{""}
			if _, ok := sys.(imkubeSystem); ok {
				runs = modes
			}
			for _, m := range runs {
				env.readDiffusion = m == "read"
				runUsers, name := users, strings.TrimSpace(sys.name()+" "+m)
				if v.cpuprofile != "" && (len(sizes) > 1 || len(runs) > 1) {
					ext := filepath.Ext(v.cpuprofile)
					env.cpuprofile = fmt.Sprintf("%s-%d-%s%s", strings.TrimSuffix(v.cpuprofile, ext), members, m, ext)
				}
				x, err := runGroup(ctx, env, sys, runUsers, r, warmup, d)
				if err != nil {
					return fmt.Errorf("%s, %d members: %w", name, members, err)
				}
				res[name] = x
				names = append(names, name)
				all = append(all, fanoutRow{members, name, x})
			}
		}
		printResults(out, names, res)
		if err := v.check(res); err != nil {
			return err
		}
	}
	if len(sizes) > 1 {
		printFanoutSummary(out, all)
	}
	return nil
}

// printFanoutSummary prints the ratios of every imkube row to the peer's
// rows of its size: the one table of a default run.
func printFanoutSummary(out io.Writer, rows []fanoutRow) {
	fmt.Fprintf(out, "\nsummary: imkube / Centrifugo at each size (deliveries per CPU-second; p99 delivery latency)\n")
	fmt.Fprintf(out, "%8s %-22s %13s %14s %14s %12s %12s %16s\n", "members", "imkube", "deliv/CPU-s", "vs history", "vs no history",
		"p99 ms", "p99 vs hist", "lost/dup/reord")
	for _, r := range rows {
		if !strings.HasPrefix(r.name, "imkube") {
			continue
		}
		ratio := func(peer string, f func(im, p result) float64) string {
			for _, p := range rows {
				if p.members == r.members && p.name == peer {
					return fmt.Sprintf("%.2fx", f(r.res, p.res))
				}
			}
			return "-"
		}
		perCPU := func(im, p result) float64 { return im.perCPU() / max(p.perCPU(), 1) }
		p99 := func(im, p result) float64 { return ms(im.p99) / max(ms(p.p99), 0.001) }
		fmt.Fprintf(out, "%8d %-22s %13.0f %14s %14s %12.2f %12s %16s\n", r.members, r.name, r.res.perCPU(),
			ratio("centrifugo history", perCPU), ratio("centrifugo no history", perCPU), ms(r.res.p99), ratio("centrifugo history", p99),
			fmt.Sprintf("%d/%d/%d", r.res.lost, r.res.dup, r.res.reordered))
	}
}

func runGroup(ctx context.Context, env *runEnv, sys system, users []string, rate int, warmup, d time.Duration) (result, error) {
	s, err := sys.start(ctx, env, users, users)
	if err != nil {
		return result{}, err
	}
	defer s.stop()
	t := newTracker()
	conns, failed, err := dialAll(ctx, env, sys, s, users, func(dst int) func([]byte) {
		return func(p []byte) {
			if len(p) == 0 {
				return
			}
			switch p[0] {
			case '#': // read diffusion: a notify of seq
				seq, _ := strconv.ParseInt(string(p[1:]), 10, 64)
				t.notified(dst, seq)
			case '!': // the sender's ack: "!seq!payload"
				seqStr, payload, _ := strings.Cut(string(p[1:]), "!")
				seq, _ := strconv.ParseInt(seqStr, 10, 64)
				t.acked(seq, []byte(payload))
			default:
				t.delivered(dst, p)
			}
		}
	})
	defer closeAll(conns)
	if failed > 0 {
		return result{}, err
	}
	var n int64
	send := func() error {
		n++
		return sys.sendGroup(conns[0], s.groupID, t.payload(0, n))
	}
	return measure(ctx, s, t, rate, warmup, d, int64(len(users)-1), send)
}
