// clusterfile-check decodes Sealer Clusterfiles strictly into Sealer's own Go types (v0.11.0):
// an unknown or misspelt field, a malformed IP address, a kind Sealer does not know, a host role
// other than master or node, an even number of masters, an address listed twice or a plugin
// that Sealer would not run fails. Sealer's own decoder ignores unknown fields.
//
// Usage: clusterfile-check FILE...; prints one line per problem, exits 1 if there is any.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/sealerio/sealer/common"
	v1 "github.com/sealerio/sealer/types/api/v1"
	v2 "github.com/sealerio/sealer/types/api/v2"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	k8syaml "k8s.io/apimachinery/pkg/util/yaml"
	"sigs.k8s.io/yaml"
)

// The hook phases Sealer v0.11.0 runs plugins at (pkg/cluster-runtime/hook.go) and its one hook type.
var phases = map[string]bool{
	"pre-install": true, "post-install": true, "pre-uninstall": true, "post-uninstall": true,
	"pre-scaleup": true, "post-scaleup": true, "upgrade": true, "rollback": true,
	"pre-init-host": true, "post-init-host": true, "pre-clean-host": true, "post-clean-host": true,
	"upgrade-host": true,
}

func check(path string) []string {
	raw, err := os.ReadFile(path)
	if err != nil {
		return []string{err.Error()}
	}
	var problems []string
	fail := func(format string, args ...any) { problems = append(problems, fmt.Sprintf(path+": "+format, args...)) }
	decoder := k8syaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(raw)))
	clusters := 0
	for doc := 1; ; doc++ {
		chunk, err := decoder.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			fail("document %d: %v", doc, err)
			break
		}
		if len(bytes.TrimSpace(chunk)) == 0 {
			continue
		}
		var meta metav1.TypeMeta
		if err := yaml.Unmarshal(chunk, &meta); err != nil {
			fail("document %d: %v", doc, err)
			continue
		}
		switch {
		case meta.Kind == "Cluster" && meta.APIVersion == v2.GroupVersion.String():
			clusters++
			var cluster v2.Cluster
			if err := yaml.UnmarshalStrict(chunk, &cluster); err != nil {
				fail("Cluster: %v", err)
				continue
			}
			checkCluster(&cluster, fail)
		case meta.Kind == "Plugin" && meta.APIVersion == v1.GroupVersion.String():
			var plugin v1.Plugin
			if err := yaml.UnmarshalStrict(chunk, &plugin); err != nil {
				fail("Plugin: %v", err)
				continue
			}
			if plugin.Spec.Type != "SHELL" {
				fail("Plugin %s: type %q is not a hook type Sealer runs (SHELL)", plugin.Name, plugin.Spec.Type)
			}
			for _, phase := range strings.Split(plugin.Spec.Action, "|") {
				if !phases[phase] {
					fail("Plugin %s: action %q is not a phase Sealer runs plugins at", plugin.Name, phase)
				}
			}
			for _, scope := range strings.Split(plugin.Spec.Scope, "|") {
				if scope != common.MASTER && scope != common.NODE {
					fail("Plugin %s: scope %q is not master or node", plugin.Name, scope)
				}
			}
		default:
			fail("document %d: %s %s is not a Cluster (%s) or Plugin (%s)", doc, meta.APIVersion, meta.Kind,
				v2.GroupVersion, v1.GroupVersion)
		}
	}
	if clusters != 1 {
		fail("holds %d Cluster documents, not one", clusters)
	}
	return problems
}

func checkCluster(cluster *v2.Cluster, fail func(string, ...any)) {
	if cluster.Spec.Image == "" {
		fail("Cluster %s: spec.image (the cluster image) is empty", cluster.Name)
	}
	seen := map[string]bool{}
	for i, host := range cluster.Spec.Hosts {
		if len(host.IPS) == 0 {
			fail("Cluster %s: hosts[%d] has no ips", cluster.Name, i)
		}
		for _, role := range host.Roles {
			if role != common.MASTER && role != common.NODE {
				fail("Cluster %s: hosts[%d] role %q is not master or node", cluster.Name, i, role)
			}
		}
		for _, ip := range host.IPS {
			if ip.To4() == nil {
				fail("Cluster %s: hosts[%d] address %s is not IPv4", cluster.Name, i, ip)
			}
			if seen[ip.String()] {
				fail("Cluster %s: address %s is listed twice", cluster.Name, ip)
			}
			seen[ip.String()] = true
		}
	}
	masters := len(cluster.GetMasterIPList())
	if masters == 0 || masters%2 == 0 {
		fail("Cluster %s: %d masters (etcd needs an odd number, at least one)", cluster.Name, masters)
	}
	if cluster.Spec.SSH.User == "" || (cluster.Spec.SSH.Pk == "" && cluster.Spec.SSH.Passwd == "") {
		fail("Cluster %s: spec.ssh needs a user and a private key", cluster.Name)
	}
	if cluster.Spec.SSH.Passwd != "" {
		fail("Cluster %s: spec.ssh.passwd puts a password in Git; use a key (pk)", cluster.Name)
	}
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: clusterfile-check CLUSTERFILE...")
		os.Exit(2)
	}
	failed := false
	for _, path := range os.Args[1:] {
		problems := check(path)
		for _, p := range problems {
			fmt.Println(p)
		}
		if len(problems) == 0 {
			fmt.Printf("%s: ok\n", path)
		}
		failed = failed || len(problems) > 0
	}
	if failed {
		os.Exit(1)
	}
}
