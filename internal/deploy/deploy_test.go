package deploy

import (
	"context"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/cli"
	"github.com/compose-spec/compose-go/v2/types"
)

// secrets are the variables docker-compose.yml requires, with values as a
// user would set them.
var secrets = map[string]string{
	"HOOKSTREAM_GENERIC_SECRET":    "generic-secret-of-the-deploy-test",
	"HOOKSTREAM_ADMIN_TOKEN":       "admin-token-of-the-deploy-test",
	"HOOKSTREAM_POSTGRES_PASSWORD": "0123456789abcdef",
}

// load parses docker-compose.yml with compose-go, the loader Docker Compose
// uses: schema validation, interpolation, anchors and merges, consistency
// (depends_on naming existing services), with the secrets set.
func load(t *testing.T) *types.Project {
	t.Helper()
	var env []string
	for k, v := range secrets {
		env = append(env, k+"="+v)
	}
	p, err := loadWith(t, env)
	if err != nil {
		t.Fatalf("docker-compose.yml does not load: %v", err)
	}
	return p
}

// loadWith loads docker-compose.yml with env as the only variables: none
// of the machine running the test, no .env file.
func loadWith(t *testing.T, env []string) (*types.Project, error) {
	t.Helper()
	root, err := filepath.Abs(filepath.Join("..", ".."))
	if err != nil {
		t.Fatal(err)
	}
	opts, err := cli.NewProjectOptions(
		[]string{filepath.Join(root, "docker-compose.yml")},
		cli.WithWorkingDirectory(root),
		cli.WithEnv(env),
		cli.WithDiscardEnvFile,
	)
	if err != nil {
		t.Fatal(err)
	}
	return opts.LoadProject(context.Background())
}

// TestComposeRefusesMissingSecrets: without any one of its secrets, or with
// it empty, the stack does not load (so `docker compose up` does not
// start), and the error names the variable; with them, each reaches the
// services that use it, and no secret has a default in the file.
func TestComposeRefusesMissingSecrets(t *testing.T) {
	t.Parallel()
	for missing := range secrets {
		for _, empty := range []bool{false, true} {
			var env []string
			for k, v := range secrets {
				if k == missing {
					if !empty {
						continue
					}
					v = ""
				}
				env = append(env, k+"="+v)
			}
			_, err := loadWith(t, env)
			if err == nil || !strings.Contains(err.Error(), missing) {
				t.Errorf("%s unset (empty: %v): loads (error %v), want an error naming it", missing, empty, err)
			}
		}
	}
	p := load(t)
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	for _, name := range hookstreamServices {
		s := service(t, p, name)
		if env(s, "HOOKSTREAM_GENERIC_SECRET") != secrets["HOOKSTREAM_GENERIC_SECRET"] || env(s, "HOOKSTREAM_ADMIN_TOKEN") != secrets["HOOKSTREAM_ADMIN_TOKEN"] {
			t.Errorf("%s: the generic secret or the admin token is not the one set", name)
		}
		if !strings.Contains(env(s, "HOOKSTREAM_DATABASE_URL"), ":"+secrets["HOOKSTREAM_POSTGRES_PASSWORD"]+"@") {
			t.Errorf("%s: the database URL does not carry the password set", name)
		}
	}
	if got := env(service(t, p, "postgres"), "POSTGRES_PASSWORD"); got != secrets["HOOKSTREAM_POSTGRES_PASSWORD"] {
		t.Errorf("postgres: POSTGRES_PASSWORD is not the one set")
	}
	raw, err := os.ReadFile(filepath.Join("..", "..", "docker-compose.yml"))
	if err != nil {
		t.Fatal(err)
	}
	for k := range secrets {
		if m := regexp.MustCompile(`\$\{` + k + `:?-`).FindString(string(raw)); m != "" {
			t.Errorf("docker-compose.yml gives %s a default (%s…)", k, m)
		}
	}
	if strings.Contains(string(raw), "change-me") {
		t.Error("docker-compose.yml still has a change-me secret")
	}
}

func service(t *testing.T, p *types.Project, name string) types.ServiceConfig {
	t.Helper()
	s, err := p.GetService(name)
	if err != nil {
		t.Fatalf("service %s: %v", name, err)
	}
	return s
}

var (
	hookstreamServices = []string{"migrate", "topics", "receiver", "consumer-1", "consumer-2"}
	kafkaServices      = []string{"kafka-1", "kafka-2", "kafka-3"}
)

func TestComposeServicesAndImages(t *testing.T) {
	t.Parallel()
	p := load(t)
	want := append(append([]string{"postgres"}, kafkaServices...), hookstreamServices...)
	got := p.ServiceNames()
	for _, name := range want {
		if !slices.Contains(got, name) {
			t.Errorf("service %s missing (have %v)", name, got)
		}
	}

	// Real Apache Kafka in KRaft mode: the official image, 3.9 or 4.x.
	for _, name := range kafkaServices {
		kafka := service(t, p, name)
		if m := regexp.MustCompile(`^apache/kafka:(\d+)\.(\d+)`).FindStringSubmatch(kafka.Image); m == nil {
			t.Errorf("%s image %q is not apache/kafka:<version>", name, kafka.Image)
		} else if major, minor := atoi(m[1]), atoi(m[2]); !(major == 3 && minor == 9) && major != 4 {
			t.Errorf("%s image %q: want Apache Kafka 3.9 or 4.x", name, kafka.Image)
		}
		if kafka.Environment["KAFKA_PROCESS_ROLES"] == nil {
			t.Errorf("%s: KAFKA_PROCESS_ROLES unset: not KRaft", name)
		}
	}

	// The official PostgreSQL image, current major (18, released 2025-09).
	pg := service(t, p, "postgres")
	if m := regexp.MustCompile(`^(?:docker\.io/)?(?:library/)?postgres:(\d+)`).FindStringSubmatch(pg.Image); m == nil {
		t.Errorf("postgres image %q is not the official postgres:<major>", pg.Image)
	} else if atoi(m[1]) < 18 {
		t.Errorf("postgres image %q: want the current major, 18 or later", pg.Image)
	}
	// Since 18 the image keeps PGDATA under /var/lib/postgresql/<major>;
	// a volume on the old …/data path is refused at start.
	for _, v := range pg.Volumes {
		if v.Target == "/var/lib/postgresql/data" {
			t.Error("postgres: volume on /var/lib/postgresql/data; PostgreSQL 18+ wants /var/lib/postgresql")
		}
	}

	// Every hookstream role runs the one image built from the Dockerfile.
	for _, name := range hookstreamServices {
		if img := service(t, p, name).Image; img != "hookstream:local" {
			t.Errorf("%s: image %q, want hookstream:local", name, img)
		}
	}
	if service(t, p, "migrate").Build == nil {
		t.Error("migrate: no build: nothing builds hookstream:local")
	}
	// topics --apply: topics an older release created get this one's
	// configs, where `topics` alone would exit 1 and start nothing.
	for name, cmd := range map[string][]string{"migrate": {"migrate"}, "topics": {"topics", "--apply"}, "receiver": {"serve"}, "consumer-1": {"consume"}, "consumer-2": {"consume"}} {
		if got := service(t, p, name).Command; !slices.Equal([]string(got), cmd) {
			t.Errorf("%s: command %v, want %v", name, got, cmd)
		}
	}
}

func TestComposeStartOrder(t *testing.T) {
	t.Parallel()
	p := load(t)
	const healthy, completed = types.ServiceConditionHealthy, types.ServiceConditionCompletedSuccessfully
	want := map[string]map[string]string{
		"migrate":    {"postgres": healthy},
		"topics":     {"migrate": completed},
		"receiver":   {"migrate": completed, "topics": completed, "postgres": healthy},
		"consumer-1": {"migrate": completed, "topics": completed, "postgres": healthy},
		"consumer-2": {"migrate": completed, "topics": completed, "postgres": healthy},
	}
	// Every broker: topics get three replicas only once three brokers
	// have registered.
	for name, deps := range want {
		if name != "migrate" {
			for _, k := range kafkaServices {
				deps[k] = healthy
			}
		}
	}
	for name, deps := range want {
		s := service(t, p, name)
		for dep, cond := range deps {
			d, ok := s.DependsOn[dep]
			switch {
			case !ok:
				t.Errorf("%s: does not depend on %s", name, dep)
			case d.Condition != cond:
				t.Errorf("%s: depends on %s with condition %q, want %q", name, dep, d.Condition, cond)
			}
		}
	}
}

func TestComposeHealthChecksAndRestarts(t *testing.T) {
	t.Parallel()
	p := load(t)
	// Long-running services: a health check (what service_healthy waits
	// for) and a restart policy.
	for _, name := range append([]string{"postgres", "receiver", "consumer-1", "consumer-2"}, kafkaServices...) {
		s := service(t, p, name)
		if s.HealthCheck == nil || s.HealthCheck.Disable || len(s.HealthCheck.Test) < 2 {
			t.Errorf("%s: no health check", name)
		}
		if s.Restart != types.RestartPolicyUnlessStopped && s.Restart != types.RestartPolicyAlways {
			t.Errorf("%s: restart %q, want unless-stopped or always", name, s.Restart)
		}
	}
	// The hookstream image is distroless: no shell, so its checks exec the
	// binary's own probe against the service's HTTP port.
	for name, port := range map[string]string{"receiver": "8080", "consumer-1": "8081", "consumer-2": "8081"} {
		test := service(t, p, name).HealthCheck.Test
		if len(test) < 3 || test[0] != "CMD" || test[1] != "/usr/local/bin/hookstream" || test[2] != "healthcheck" {
			t.Errorf("%s: health check %q, want [CMD /usr/local/bin/hookstream healthcheck …]", name, test)
			continue
		}
		if !slices.Contains(test, "http://127.0.0.1:"+port+"/readyz") {
			t.Errorf("%s: health check %q does not probe /readyz on port %s", name, test, port)
		}
	}
	// One-shots must not be restarted after they complete.
	for _, name := range []string{"migrate", "topics"} {
		if r := service(t, p, name).Restart; r != "" && r != types.RestartPolicyNo {
			t.Errorf("%s: restart %q on a one-shot", name, r)
		}
	}
}

func TestComposeHookstreamEnvironment(t *testing.T) {
	t.Parallel()
	p := load(t)
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	need := map[string][]string{
		"migrate":    {"HOOKSTREAM_DATABASE_URL"},
		"topics":     {"HOOKSTREAM_KAFKA_BROKERS", "HOOKSTREAM_PARTITIONS"},
		"receiver":   {"HOOKSTREAM_KAFKA_BROKERS", "HOOKSTREAM_DATABASE_URL", "HOOKSTREAM_SOURCES", "HOOKSTREAM_HTTP_ADDR"},
		"consumer-1": {"HOOKSTREAM_KAFKA_BROKERS", "HOOKSTREAM_DATABASE_URL", "HOOKSTREAM_CONSUMER_GROUP", "HOOKSTREAM_HTTP_ADDR", "HOOKSTREAM_INSTANCE"},
		"consumer-2": {"HOOKSTREAM_KAFKA_BROKERS", "HOOKSTREAM_DATABASE_URL", "HOOKSTREAM_CONSUMER_GROUP", "HOOKSTREAM_HTTP_ADDR", "HOOKSTREAM_INSTANCE"},
	}
	for name, keys := range need {
		s := service(t, p, name)
		for _, k := range keys {
			if env(s, k) == "" {
				t.Errorf("%s: %s unset", name, k)
			}
		}
		// Inside the compose network the brokers are their internal
		// listeners, never the host's 127.0.0.1; every one of them, so
		// that a client starts while any one is down.
		if b, want := env(s, "HOOKSTREAM_KAFKA_BROKERS"), "kafka-1:29092,kafka-2:29092,kafka-3:29092"; b != "" && b != want {
			t.Errorf("%s: HOOKSTREAM_KAFKA_BROKERS=%q, want %s", name, b, want)
		}
		if u := env(s, "HOOKSTREAM_DATABASE_URL"); u != "" && !regexp.MustCompile(`^postgres(ql)?://[^@]+@postgres:5432/`).MatchString(u) {
			t.Errorf("%s: HOOKSTREAM_DATABASE_URL=%q does not point at the postgres service", name, u)
		}
	}
	// Three replicas, two in sync: one broker may fail with no
	// acknowledged event lost and writes still accepted.
	tp := service(t, p, "topics")
	if rf, mi := env(tp, "HOOKSTREAM_REPLICATION_FACTOR"), env(tp, "HOOKSTREAM_MIN_INSYNC_REPLICAS"); rf != "3" || mi != "2" {
		t.Errorf("topics: HOOKSTREAM_REPLICATION_FACTOR=%q HOOKSTREAM_MIN_INSYNC_REPLICAS=%q, want 3 and 2", rf, mi)
	}
	c1, c2 := service(t, p, "consumer-1"), service(t, p, "consumer-2")
	if g1, g2 := env(c1, "HOOKSTREAM_CONSUMER_GROUP"), env(c2, "HOOKSTREAM_CONSUMER_GROUP"); g1 != g2 {
		t.Errorf("consumers in different groups: %q and %q", g1, g2)
	}
	if i1, i2 := env(c1, "HOOKSTREAM_INSTANCE"), env(c2, "HOOKSTREAM_INSTANCE"); i1 == i2 {
		t.Errorf("both consumers are instance %q: audit records could not tell them apart", i1)
	}
	// The receiver's sources file is mounted where HOOKSTREAM_SOURCES says.
	rcv := service(t, p, "receiver")
	if !slices.ContainsFunc(rcv.Volumes, func(v types.ServiceVolumeConfig) bool { return v.Target == env(rcv, "HOOKSTREAM_SOURCES") }) {
		t.Errorf("receiver: nothing mounted at HOOKSTREAM_SOURCES=%s", env(rcv, "HOOKSTREAM_SOURCES"))
	}
}

func TestComposePorts(t *testing.T) {
	t.Parallel()
	p := load(t)
	want := map[string]struct {
		published string
		target    uint32
	}{
		"kafka-1":    {"9092", 9092},
		"kafka-2":    {"9093", 9092},
		"kafka-3":    {"9094", 9092},
		"postgres":   {"5432", 5432},
		"receiver":   {"8080", 8080},
		"consumer-1": {"8081", 8081},
		"consumer-2": {"8082", 8081},
	}
	published := map[string]string{}
	for name, w := range want {
		s := service(t, p, name)
		found := false
		for _, port := range s.Ports {
			if port.Published == w.published && port.Target == w.target {
				found = true
				// Local stack: nothing listens on every interface.
				if port.HostIP != "127.0.0.1" {
					t.Errorf("%s: port %s published on %q, want 127.0.0.1", name, port.Published, port.HostIP)
				}
			}
			if other, dup := published[port.Published]; dup {
				t.Errorf("%s and %s both publish host port %s", name, other, port.Published)
			}
			published[port.Published] = name
		}
		if !found {
			t.Errorf("%s: no port %s:%d (have %+v)", name, w.published, w.target, s.Ports)
		}
	}
	// A consumer's port is the one its HTTP listener is configured on.
	for _, name := range []string{"consumer-1", "consumer-2"} {
		s := service(t, p, name)
		if addr := s.Environment["HOOKSTREAM_HTTP_ADDR"]; addr == nil || *addr != ":"+strconv.Itoa(int(want[name].target)) {
			t.Errorf("%s: HOOKSTREAM_HTTP_ADDR %v does not match its port %d", name, addr, want[name].target)
		}
	}
}

// The three nodes form one KRaft cluster: one cluster id, distinct node
// ids, each a voter of the quorum, each advertising to the host the port
// it publishes.
func TestComposeKafkaCluster(t *testing.T) {
	t.Parallel()
	p := load(t)
	env := func(s types.ServiceConfig, k string) string {
		if v := s.Environment[k]; v != nil {
			return *v
		}
		return ""
	}
	var voters []string
	ids := map[string]bool{}
	clusterID := env(service(t, p, kafkaServices[0]), "CLUSTER_ID")
	if len(clusterID) != 22 {
		t.Errorf("CLUSTER_ID %q: want a Kafka UUID (22 characters of URL-safe base64)", clusterID)
	}
	for _, name := range kafkaServices {
		s := service(t, p, name)
		if got := env(s, "CLUSTER_ID"); got != clusterID {
			t.Errorf("%s: CLUSTER_ID %q, %s has %q", name, got, kafkaServices[0], clusterID)
		}
		id := env(s, "KAFKA_NODE_ID")
		if id == "" || ids[id] {
			t.Errorf("%s: KAFKA_NODE_ID %q missing or taken", name, id)
		}
		ids[id] = true
		voters = append(voters, id+"@"+name+":9093")
		if len(s.Ports) != 1 || !strings.Contains(env(s, "KAFKA_ADVERTISED_LISTENERS"), "EXTERNAL://127.0.0.1:"+s.Ports[0].Published) {
			t.Errorf("%s: advertises %q, publishes %+v", name, env(s, "KAFKA_ADVERTISED_LISTENERS"), s.Ports)
		}
		if !strings.Contains(env(s, "KAFKA_ADVERTISED_LISTENERS"), "INTERNAL://"+name+":29092") {
			t.Errorf("%s: advertises %q, want INTERNAL://%s:29092", name, env(s, "KAFKA_ADVERTISED_LISTENERS"), name)
		}
		if got, want := env(s, "KAFKA_CONTROLLER_QUORUM_VOTERS"), strings.Join(voters, ","); !strings.HasPrefix(got, want) {
			t.Errorf("%s: KAFKA_CONTROLLER_QUORUM_VOTERS %q does not list %s", name, got, want)
		}
	}
}

func atoi(s string) int {
	n, err := strconv.Atoi(s)
	if err != nil {
		return -1
	}
	return n
}
