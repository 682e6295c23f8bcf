package topics

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kerr"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"
)

// settleTimeout bounds how long Apply waits for the brokers to report
// what it set; a broker that has not caught up by then is an error to
// report, not a reason to hang a deployment.
const settleTimeout = 30 * time.Second

// settle waits until every broker reports each diff's value. A config
// change commits at the KRaft controller and reaches each broker's
// metadata cache a moment later; DescribeConfigs is answered from that
// cache by whichever broker the client picks, so without this wait a
// Check right after Apply could read the old value from a broker that
// is behind. Nothing announces that a broker has caught up: settle asks
// each one in turn until it agrees.
func settle(ctx context.Context, cl *kgo.Client, diffs []Diff) error {
	ctx, cancel := context.WithTimeout(ctx, settleTimeout)
	defer cancel()
	brokers, err := kadm.NewClient(cl).ListBrokers(ctx)
	if err != nil {
		return fmt.Errorf("topics: list the brokers to confirm the change: %w", err)
	}
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for _, b := range brokers.NodeIDs() {
		for {
			behind, err := brokerBehind(ctx, cl.Broker(int(b)), diffs)
			if err == nil && behind == "" {
				break
			}
			select {
			case <-ctx.Done():
				if err == nil {
					err = fmt.Errorf("still reports %s", behind)
				}
				return fmt.Errorf("topics: the change was made, but broker %d has not confirmed it within %s: %w", b, settleTimeout, err)
			case <-tick.C:
			}
		}
	}
	return nil
}

// brokerBehind asks one broker for the diffs' topics and returns the first
// diff whose value it does not report yet ("" when it reports them all).
func brokerBehind(ctx context.Context, b *kgo.Broker, diffs []Diff) (string, error) {
	req := kmsg.NewPtrDescribeConfigsRequest()
	index := map[string]int{}
	for _, d := range diffs {
		if _, ok := index[d.Topic]; !ok {
			index[d.Topic] = len(req.Resources)
			r := kmsg.NewDescribeConfigsRequestResource()
			r.ResourceType, r.ResourceName = kmsg.ConfigResourceTypeTopic, d.Topic
			req.Resources = append(req.Resources, r)
		}
	}
	resp, err := req.RequestWith(ctx, b)
	if err != nil {
		return "", err
	}
	have := map[[2]string]string{}
	for _, r := range resp.Resources {
		if err := kerr.ErrorForCode(r.ErrorCode); err != nil {
			return "", fmt.Errorf("%s: %w", r.ResourceName, err)
		}
		for _, c := range r.Configs {
			if c.Value != nil && c.Source == kmsg.ConfigSourceDynamicTopicConfig {
				have[[2]string{r.ResourceName, c.Name}] = *c.Value
			}
		}
	}
	for _, d := range diffs {
		if have[[2]string{d.Topic, d.Key}] != d.Want {
			return d.String(), nil
		}
	}
	return "", nil
}
