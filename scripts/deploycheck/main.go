// deploycheck checks safeguard's Kubernetes and compose deployments with
// the tools' own code:
//
//	deploycheck kustomize DIR   renders DIR with kustomize (krusty) and
//	                            decodes every object strictly against the
//	                            Kubernetes API types: an unknown or
//	                            misspelt field, or a wrong type, fails;
//	                            then checks what the agent needs of its
//	                            DaemonSet.
//	deploycheck compose FILE    loads FILE with compose-spec's loader,
//	                            which validates it against the compose
//	                            schema, and checks that every file it
//	                            mounts exists.
package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
	appsv1 "k8s.io/api/apps/v1"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"sigs.k8s.io/kustomize/api/krusty"
	"sigs.k8s.io/kustomize/kyaml/filesys"
)

func main() {
	if len(os.Args) != 3 {
		fmt.Fprintln(os.Stderr, "usage: deploycheck kustomize DIR | compose FILE")
		os.Exit(2)
	}
	var problems []string
	switch os.Args[1] {
	case "kustomize":
		problems = kustomize(os.Args[2])
	case "compose":
		problems = compose(os.Args[2])
	default:
		fmt.Fprintln(os.Stderr, "usage: deploycheck kustomize DIR | compose FILE")
		os.Exit(2)
	}
	for _, p := range problems {
		fmt.Println("deploycheck:", p)
	}
	if len(problems) > 0 {
		os.Exit(1)
	}
}

func kustomize(dir string) []string {
	resources, err := krusty.MakeKustomizer(krusty.MakeDefaultOptions()).Run(filesys.MakeFsOnDisk(), dir)
	if err != nil {
		return []string{fmt.Sprintf("kustomize %s: %v", dir, err)}
	}
	scheme := runtime.NewScheme()
	for _, add := range []func(*runtime.Scheme) error{corev1.AddToScheme, appsv1.AddToScheme} {
		if err := add(scheme); err != nil {
			return []string{err.Error()}
		}
	}
	decoder := serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDeserializer()
	var problems []string
	configMaps := map[string]bool{}
	var daemonSets []*appsv1.DaemonSet
	for _, res := range resources.Resources() {
		yaml, err := res.AsYAML()
		if err != nil {
			problems = append(problems, err.Error())
			continue
		}
		obj, gvk, err := decoder.Decode(yaml, nil, nil)
		if err != nil {
			problems = append(problems, fmt.Sprintf("%s %s: %v", res.GetKind(), res.GetName(), err))
			continue
		}
		switch o := obj.(type) {
		case *corev1.ConfigMap:
			configMaps[o.Name] = true
		case *appsv1.DaemonSet:
			daemonSets = append(daemonSets, o)
		}
		fmt.Printf("deploycheck: %s %s/%s: valid\n", gvk.Kind, res.GetNamespace(), res.GetName())
	}
	if len(daemonSets) != 1 {
		return append(problems, fmt.Sprintf("want one DaemonSet, rendered %d", len(daemonSets)))
	}
	return append(problems, checkDaemonSet(daemonSets[0], configMaps)...)
}

// What the agent needs of its pod.
func checkDaemonSet(ds *appsv1.DaemonSet, configMaps map[string]bool) []string {
	var problems []string
	spec := ds.Spec.Template.Spec
	if !spec.HostPID {
		problems = append(problems, "DaemonSet: hostPID must be true (the host's /proc)")
	}
	hostPaths := map[string]string{}
	for _, v := range spec.Volumes {
		if v.HostPath != nil {
			hostPaths[v.Name] = v.HostPath.Path
		}
		if v.ConfigMap != nil && !configMaps[v.ConfigMap.Name] {
			problems = append(problems, fmt.Sprintf("volume %s: ConfigMap %s is not in the render", v.Name, v.ConfigMap.Name))
		}
	}
	var agent, sidecar *corev1.Container
	for i := range spec.Containers {
		switch spec.Containers[i].Name {
		case "safeguard":
			agent = &spec.Containers[i]
		case "otelcol":
			sidecar = &spec.Containers[i]
		}
	}
	if agent == nil || sidecar == nil {
		return append(problems, "DaemonSet: want containers safeguard and otelcol")
	}
	mounted := map[string]string{}
	for _, m := range agent.VolumeMounts {
		if path, ok := hostPaths[m.Name]; ok {
			mounted[path] = m.MountPath
		}
	}
	for _, path := range []string{"/sys/fs/bpf", "/sys/kernel/btf", "/sys/kernel/security", "/sys/fs/cgroup"} {
		if mounted[path] != path {
			problems = append(problems, fmt.Sprintf("agent: the host's %s is not mounted at %s", path, path))
		}
	}
	nodeName := false
	for _, e := range agent.Env {
		if e.Name == "K8S_NODE_NAME" && e.ValueFrom != nil && e.ValueFrom.FieldRef != nil &&
			e.ValueFrom.FieldRef.FieldPath == "spec.nodeName" {
			nodeName = true
		}
	}
	if !nodeName {
		problems = append(problems, "agent: K8S_NODE_NAME must come from spec.nodeName (the Resource's k8s.node.name)")
	}
	if sc := agent.SecurityContext; sc == nil || sc.Capabilities == nil {
		problems = append(problems, "agent: no capabilities")
	} else {
		have := map[corev1.Capability]bool{}
		for _, c := range sc.Capabilities.Add {
			have[c] = true
		}
		for _, c := range []corev1.Capability{"BPF", "PERFMON"} {
			if !have[c] && (sc.Privileged == nil || !*sc.Privileged) {
				problems = append(problems, fmt.Sprintf("agent: capability %s missing", c))
			}
		}
	}
	if len(sidecar.Args) == 0 || !strings.Contains(strings.Join(sidecar.Args, " "), "--config") {
		problems = append(problems, "otelcol: no --config")
	}
	return problems
}

func compose(file string) []string {
	ctx := context.Background()
	options, err := cli.NewProjectOptions([]string{file},
		cli.WithWorkingDirectory(filepath.Dir(file)),
		cli.WithOsEnv,
		cli.WithName("safeguard"),
	)
	if err != nil {
		return []string{err.Error()}
	}
	project, err := options.LoadProject(ctx)
	if err != nil {
		return []string{fmt.Sprintf("%s: %v", file, err)}
	}
	var problems []string
	for _, service := range project.Services {
		for _, v := range service.Volumes {
			if v.Type == "bind" && strings.HasPrefix(v.Source, "/") && !strings.HasPrefix(v.Source, "/sys") &&
				!strings.HasPrefix(v.Source, "/proc") && !strings.HasPrefix(v.Source, "/var") && !strings.HasPrefix(v.Source, "/run") {
				if _, err := os.Stat(v.Source); err != nil {
					problems = append(problems, fmt.Sprintf("service %s: mounts %s, which does not exist", service.Name, v.Source))
				}
			}
		}
		for _, c := range service.Configs {
			if _, ok := project.Configs[c.Source]; !ok {
				problems = append(problems, fmt.Sprintf("service %s: config %s is not defined", service.Name, c.Source))
			}
		}
		fmt.Printf("deploycheck: compose service %s: valid\n", service.Name)
	}
	for name, c := range project.Configs {
		if c.File != "" {
			if _, err := os.Stat(c.File); err != nil {
				problems = append(problems, fmt.Sprintf("config %s: %s does not exist", name, c.File))
			}
		}
	}
	return problems
}
