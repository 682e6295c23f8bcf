package testenv

import (
	"context"
	"fmt"
	"time"

	"github.com/twmb/franz-go/pkg/kadm"
	"github.com/twmb/franz-go/pkg/kgo"
	"github.com/twmb/franz-go/pkg/kmsg"

	"github.com/hookstream/hookstream/internal/kafka"
)

// On kfake a topic is usable everywhere the moment CreateTopics returns.
// On Apache Kafka the controller has it then, and each broker learns it,
// and its partitions' leaders, moments later: until then a broker answers
// UNKNOWN_TOPIC_OR_PARTITION, and a test that lists offsets there sees an
// empty topic. waitTopicsReady waits, for every broker, until it reports
// each partition with a leader and all its replicas in sync, so that a
// test starts on a topic as usable as kfake's, and what it asserts does
// not depend on which broker a request happens to reach.
func waitTopicsReady(ctx context.Context, brokers []string, partitions int32, topics ...string) error {
	_, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		return err
	}
	defer cl.Close()
	if err := untilEveryBroker(ctx, cl, topics, func(resp *kmsg.MetadataResponse) error { return topicsReady(resp, partitions) }); err != nil {
		return fmt.Errorf("topics not ready on every broker: %w", err)
	}
	return nil
}

// topicsReady: each topic of resp has its partitions, each with a leader
// and all its replicas in sync.
func topicsReady(resp *kmsg.MetadataResponse, partitions int32) error {
	for _, t := range resp.Topics {
		var name string
		if t.Topic != nil {
			name = *t.Topic
		}
		if t.ErrorCode != 0 || int32(len(t.Partitions)) != partitions {
			return fmt.Errorf("%s: error %d, %d partitions", name, t.ErrorCode, len(t.Partitions))
		}
		for _, p := range t.Partitions {
			if p.ErrorCode != 0 || p.Leader < 0 || len(p.ISR) != len(p.Replicas) {
				return fmt.Errorf("%s/%d: error %d, leader %d, in sync %v of %v",
					name, p.Partition, p.ErrorCode, p.Leader, p.ISR, p.Replicas)
			}
		}
	}
	return nil
}

// untilEveryBroker asks every broker for the metadata of topics (nil: of
// all) until check accepts each one's answer, again every 100 ms (metadata
// propagation has no event to wait on) until ctx ends.
func untilEveryBroker(ctx context.Context, cl *kgo.Client, topics []string, check func(*kmsg.MetadataResponse) error) error {
	for {
		err := everyBroker(ctx, cl, topics, check)
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return err
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func everyBroker(ctx context.Context, cl *kgo.Client, topics []string, check func(*kmsg.MetadataResponse) error) error {
	bs, err := kadm.NewClient(cl).ListBrokers(ctx)
	if err != nil {
		return err
	}
	for _, b := range bs {
		req := kmsg.NewPtrMetadataRequest()
		for _, name := range topics {
			rt := kmsg.NewMetadataRequestTopic()
			rt.Topic = kmsg.StringPtr(name)
			req.Topics = append(req.Topics, rt)
		}
		resp, err := req.RequestWith(ctx, cl.Broker(int(b.NodeID)))
		if err == nil {
			err = check(resp)
		}
		if err != nil {
			return fmt.Errorf("broker %d: %w", b.NodeID, err)
		}
	}
	return nil
}

// warmUp returns once the cluster has acknowledged an idempotent acks=all
// produce, the kind every hookstream producer makes. The first one on a
// new cluster waits for the brokers to obtain producer ids from the
// controller (COORDINATOR_LOAD_IN_PROGRESS meanwhile), which can outlast
// the 5 s produce timeout of a test's receiver: a cluster is handed to
// the tests ready, as kfake is; and empty, as kfake is: the warm-up topic
// is deleted (a test that lists a private broker's topics found it).
func warmUp(ctx context.Context, brokers []string) error {
	adm, cl, err := kafka.NewAdmin(kafka.Config{Brokers: brokers})
	if err != nil {
		return err
	}
	defer cl.Close()
	const topic = "hookstream-testenv-warmup"
	resp, err := adm.CreateTopic(ctx, 1, int16(min(3, len(brokers))), nil, topic)
	if err == nil {
		err = resp.Err
	}
	if err != nil {
		return fmt.Errorf("warm-up topic: %w", err)
	}
	if err := waitTopicsReady(ctx, brokers, 1, topic); err != nil {
		return err
	}
	prod, err := kafka.NewProducer(kafka.Config{Brokers: brokers, ClientID: "hookstream-testenv-warmup", ProduceTimeout: time.Minute})
	if err != nil {
		return err
	}
	defer prod.Close()
	if err := prod.ProduceSync(ctx, &kgo.Record{Topic: topic, Value: []byte("warm")}).FirstErr(); err != nil {
		return fmt.Errorf("warm-up produce: %w", err)
	}
	dr, err := adm.DeleteTopic(ctx, topic)
	if err == nil {
		err = dr.Err
	}
	if err != nil {
		return fmt.Errorf("delete the warm-up topic: %w", err)
	}
	gone := func(resp *kmsg.MetadataResponse) error {
		for _, t := range resp.Topics {
			if t.Topic != nil && *t.Topic == topic {
				return fmt.Errorf("still lists %s", topic)
			}
		}
		return nil
	}
	if err := untilEveryBroker(ctx, cl, nil, gone); err != nil {
		return fmt.Errorf("the warm-up topic, deleted: %w", err)
	}
	return nil
}
