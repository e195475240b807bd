package layout

import (
	"go/parser"
	"go/token"
	"path"
	"strconv"
	"testing"
)

func TestCallCgroup(t *testing.T) {
	// The OCI runtime wrapper passes it as `exec --cgroup`, which runc and
	// crun take relative to the container's cgroup: it must not be absolute.
	for id, want := range map[string]string{
		"c1":            "tools/c1",
		"exec-0123abcd": "tools/exec-0123abcd",
	} {
		got := CallCgroup(id)
		if got != want {
			t.Errorf("CallCgroup(%q) = %q, want %q", id, got, want)
		}
		if path.IsAbs(got) || path.Dir(got) != Tools || path.Base(got) != id {
			t.Errorf("CallCgroup(%q) = %q is not %s/<id>", id, got, Tools)
		}
	}
	if Agent == Tools {
		t.Errorf("C's two children share the name %q", Agent)
	}
}

// The OCI runtime wrapper, run for every runtime call, imports layout: it
// must stay free of the project's packages and anything but the small
// standard ones.
func TestImportsNothing(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "layout.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		if p != "path" {
			t.Errorf("layout imports %q", p)
		}
	}
}
