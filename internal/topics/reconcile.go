package topics

// Reconciling existing topics: Check compares what the broker has with what
// a Config asks, Apply sets the configs that differ. Created topics get
// their configs from Ensure; topics created by an older hookstream, or
// changed by hand, keep theirs until an operator applies the new ones, so
// nothing here runs unasked.

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// Diff is one config of an existing topic that is not what the Config
// asks: another value, or the asked value inherited from the broker,
// which a change of the broker's defaults would change under the topic.
type Diff struct {
	Topic string
	Key   string
	// Have is the value the broker reports now ("" for none).
	Have string
	// Inherited says Have is the broker's (a default or a broker
	// setting), not set on the topic.
	Inherited bool
	Want      string
}

func (d Diff) String() string {
	have := d.Have
	if have == "" {
		have = "(none)"
	}
	if d.Inherited {
		have += " (the broker's)"
	}
	return fmt.Sprintf("%s %s: %s -> %s", d.Topic, d.Key, have, d.Want)
}

// Drift is what Check found.
type Drift struct {
	// Diffs are the configs Apply sets.
	Diffs []Diff
	// Manual are differences hookstream never changes, each saying why
	// and what an operator does about it.
	Manual []string
}

// Check compares the configs and partition counts of hookstream's
// existing topics with what cfg asks. It changes nothing; a topic that
// does not exist is an error (Ensure creates it).
func Check(ctx context.Context, adm *kadm.Client, cfg Config) (Drift, error) {
	cfg, err := resolve(ctx, adm, cfg)
	if err != nil {
		return Drift{}, err
	}
	var d Drift
	for _, s := range cfg.Specs() {
		r, err := describe(ctx, adm, s.Name)
		if err != nil {
			return d, err
		}
		diffs, manual := compare(r, s)
		d.Diffs = append(d.Diffs, diffs...)
		d.Manual = append(d.Manual, manual...)
	}
	return d, nil
}

// compare lists the configs of s that r lacks, in key order, and what
// only an operator can change.
func compare(r Result, s Spec) ([]Diff, []string) {
	var diffs []Diff
	var manual []string
	if r.Partitions < s.Partitions {
		manual = append(manual, fmt.Sprintf("topic %s has %d partitions, %d asked: not added, since a new partition takes over some customers' keys while their older events wait in the old ones, which breaks their order; add them (kafka-topics --alter) only with the topic drained and the receivers stopped",
			r.Name, r.Partitions, s.Partitions))
	}
	for _, key := range slices.Sorted(maps.Keys(s.Configs)) {
		want := *s.Configs[key]
		c, ok := r.configs[key]
		inherited := ok && c.Source != kmsg.ConfigSourceDynamicTopicConfig
		if ok && c.MaybeValue() == want && !inherited {
			continue
		}
		if key == minInsync && tooFewReplicas(r, want) {
			manual = append(manual, fmt.Sprintf("topic %s: min.insync.replicas %s asked, but it has %d replica(s): not set, since no write would be acknowledged; add replicas first (kafka-reassign-partitions)",
				r.Name, want, r.ReplicationFactor))
			continue
		}
		diffs = append(diffs, Diff{Topic: r.Name, Key: key, Have: c.MaybeValue(), Inherited: inherited, Want: want})
	}
	return diffs, manual
}

// tooFewReplicas says whether setting min.insync.replicas to want would
// refuse every acks=all write to r.
func tooFewReplicas(r Result, want string) bool {
	n, err := strconv.Atoi(want)
	return err == nil && r.ReplicationFactor >= 0 && int(r.ReplicationFactor) < n
}

// Apply sets each diff's config on its topic with IncrementalAlterConfigs
// (a SET per key; the topic's other configs stay as they are). The broker
// first validates every topic's change, so a value it refuses changes
// nothing; a failure between two topics' changes leaves the first
// changed, and running Apply again on a new Check finishes the work.
//
// Apply returns once every broker reports the new values (see settle),
// so that a Check right after it, answered by any broker, finds nothing.
func Apply(ctx context.Context, cl *kgo.Client, diffs []Diff) error {
	adm := kadm.NewClient(cl)
	var order []string
	alters := map[string][]kadm.AlterConfig{}
	for _, d := range diffs {
		if _, ok := alters[d.Topic]; !ok {
			order = append(order, d.Topic)
		}
		alters[d.Topic] = append(alters[d.Topic], kadm.AlterConfig{Op: kadm.SetConfig, Name: d.Key, Value: kadm.StringPtr(d.Want)})
	}
	for _, alter := range []func(context.Context, []kadm.AlterConfig, ...string) (kadm.AlterConfigsResponses, error){
		adm.ValidateAlterTopicConfigs, adm.AlterTopicConfigs,
	} {
		for _, topic := range order {
			if err := alterOne(ctx, alter, topic, alters[topic]); err != nil {
				return err
			}
		}
	}
	return settle(ctx, cl, diffs)
}

func alterOne(ctx context.Context, alter func(context.Context, []kadm.AlterConfig, ...string) (kadm.AlterConfigsResponses, error), topic string, configs []kadm.AlterConfig) error {
	resp, err := alter(ctx, configs, topic)
	if err == nil {
		var r kadm.AlterConfigsResponse
		if r, err = resp.On(topic, nil); err == nil && r.Err != nil {
			err = r.Err
			if r.ErrMessage != "" {
				err = fmt.Errorf("%w: %s", r.Err, r.ErrMessage)
			}
		}
	}
	if err != nil {
		keys := make([]string, len(configs))
		for i, c := range configs {
			keys[i] = c.Name + "=" + *c.Value
		}
		return fmt.Errorf("topics: set %s on %s: %w", strings.Join(keys, ", "), topic, err)
	}
	return nil
}
