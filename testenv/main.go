// Command testenv is one binary that runs as any of the Kubernetes control-plane components
// Stowage's tests start: etcd, kube-apiserver, kube-controller-manager, kube-scheduler and
// kubectl. Which one is chosen by the name it is run under (a symlink named after the component)
// or, failing that, by its first argument (`testenv kube-apiserver --help`).
//
// Each component is compiled from its published Go module at the version pinned in go.mod and
// runs as its own process, as it would in a real cluster; nothing here changes its behaviour.
// This is test tooling: it is never shipped with Stowage.
package main

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	_ "time/tzdata" // CronJob time zones, as the upstream mains do

	"github.com/spf13/cobra"
	"go.etcd.io/etcd/server/v3/etcdmain"
	_ "k8s.io/client-go/plugin/pkg/client/auth"
	"k8s.io/component-base/cli"
	"k8s.io/component-base/logs"
	_ "k8s.io/component-base/logs/json/register"          // --logging-format=json
	_ "k8s.io/component-base/metrics/prometheus/clientgo" // client-go metrics
	_ "k8s.io/component-base/metrics/prometheus/version"  // the build-info metric
	kubectl "k8s.io/kubectl/pkg/cmd"
	kubectlutil "k8s.io/kubectl/pkg/cmd/util"
	apiserver "k8s.io/kubernetes/cmd/kube-apiserver/app"
	controllermanager "k8s.io/kubernetes/cmd/kube-controller-manager/app"
	scheduler "k8s.io/kubernetes/cmd/kube-scheduler/app"
)

// components maps a component's name to the function that runs it with os.Args already
// rewritten so that os.Args[0] is that name; each returns the process's exit code.
var components = map[string]func() int{
	"etcd": func() int {
		etcdmain.Main(os.Args) // exits by itself on error
		return 0
	},
	"kube-apiserver":          func() int { return runCobra(apiserver.NewAPIServerCommand()) },
	"kube-controller-manager": func() int { return runCobra(controllermanager.NewControllerManagerCommand()) },
	"kube-scheduler":          func() int { return runCobra(scheduler.NewSchedulerCommand()) },
	"kubectl": func() int {
		_, _ = logs.GlogSetter(kubectl.GetLogVerbosity(os.Args))
		if err := cli.RunNoErrOutput(kubectl.NewDefaultKubectlCommand()); err != nil {
			kubectlutil.CheckErr(err) // prints kubectl's usual message and exits non-zero
		}
		return 0
	},
}

func runCobra(c *cobra.Command) int { return cli.Run(c) }

func main() {
	name := filepath.Base(os.Args[0])
	if _, ok := components[name]; !ok && len(os.Args) > 1 {
		// Called as the multi-call binary itself: the component is the first argument, and it
		// sees the rest as its own arguments under its own name.
		name = os.Args[1]
		os.Args = append([]string{name}, os.Args[2:]...)
	}
	run, ok := components[name]
	if !ok {
		names := make([]string, 0, len(components))
		for n := range components {
			names = append(names, n)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: testenv COMPONENT [ARGS...], or run it through a symlink named after the component\ncomponents: %v\n", names)
		os.Exit(2)
	}
	os.Exit(run())
}
