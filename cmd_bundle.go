package main

// Bundles: keyhook export --bundle DIR and keyhook import --bundle DIR
// (docs/configuration.md, "Bundles"). A bundle is a directory a team
// keeps in git: keyhook.yaml (config, scripts and clients, in the format
// of keyhook import) and scripts/NAME.js, one file per script, beside
// which the scripts' fixtures live (docs/scripts.md, "Testing scripts
// offline").

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/keyhook/keyhook/engine"
	"github.com/keyhook/keyhook/hooks"
	"github.com/keyhook/keyhook/scripts"
)

const (
	bundleFile       = "keyhook.yaml"
	bundleScripts    = "scripts"
	maxBundleYAML    = 16 << 20 // keyhook.yaml
	maxBundleFile    = 1 << 20  // a script or fixture file
	bundleFileMode   = 0o644
	bundleDirMode    = 0o755
	bundleYAMLHeader = "# A keyhook bundle: apply it with keyhook import --bundle DIR (docs/configuration.md, \"Bundles\").\n" +
		"# Secrets are not in it: set client secrets and script secret values on the server.\n"
)

// bundleFlags are the --bundle, --dry-run and --prune flags of import.
type bundleFlags struct {
	dir           string
	dryRun, prune bool
}

// check says a usage error: --bundle with a FILE, --dry-run or --prune
// without --bundle, no FILE nor --bundle.
func (b *bundleFlags) check(c *cobra.Command, args []string) error {
	switch {
	case b.dir != "" && len(args) > 0:
		return flagError(c, "bundle", fmt.Errorf("takes no FILE argument, got %q", args[0]))
	case b.dir == "" && b.dryRun:
		return flagError(c, "dry-run", errors.New("needs --bundle"))
	case b.dir == "" && b.prune:
		return flagError(c, "prune", errors.New("needs --bundle"))
	case b.dir == "":
		return oneArg("FILE or --bundle DIR")(c, args)
	}
	return nil
}

// exportBundle writes the database's config, scripts and clients into
// dir: users (password hashes, personal data), secrets and the bootstrap
// admin client are left out; fixtures already there are kept.
func exportBundle(c *cobra.Command, o *options, dir string, env lookupEnv, stdout, stderr io.Writer) error {
	if fi, err := os.Stat(dir); err == nil && !fi.IsDir() {
		return fmt.Errorf("--bundle %s: is not a directory", dir)
	}
	scriptDir := filepath.Join(dir, bundleScripts)
	if fi, err := os.Lstat(scriptDir); err == nil && !fi.IsDir() {
		return fmt.Errorf("--bundle %s: %s is not a directory", dir, scriptDir)
	}
	return withData(c, o, env, stderr, func(a *app) error {
		seed, err := a.eng.Export(c.Context())
		if err != nil {
			return err
		}
		out := bundleSeed(seed)
		if err := os.MkdirAll(scriptDir, bundleDirMode); err != nil {
			return err
		}
		names := map[string]bool{}
		for _, s := range seed.Scripts {
			names[s.Name+".js"] = true
			if err := writeFileAtomic(filepath.Join(scriptDir, s.Name+".js"), []byte(s.Source)); err != nil {
				return err
			}
		}
		doc, err := bundleYAML(out)
		if err != nil {
			return err
		}
		if err := writeFileAtomic(filepath.Join(dir, bundleFile), doc); err != nil {
			return err
		}
		for _, s := range out.Scripts {
			fx, err := scripts.Fixtures(filepath.Join(scriptDir, s.Name+".js"))
			if err != nil {
				return err
			}
			if len(fx) == 0 {
				fmt.Fprintf(stdout, "script %s: no fixtures (add %s/%s.test.json; docs/scripts.md)\n", s.Name, bundleScripts, s.Name)
			}
		}
		if entries, err := os.ReadDir(scriptDir); err == nil {
			for _, e := range entries {
				if strings.HasSuffix(e.Name(), ".js") && !names[e.Name()] {
					fmt.Fprintf(stdout, "%s/%s: no such script in the database (left alone)\n", bundleScripts, e.Name())
				}
			}
		}
		fmt.Fprintf(stdout, "exported bundle %s: config, %d scripts, %d clients (users and secrets left out)\n",
			dir, len(out.Scripts), len(out.Clients))
		return nil
	})
}

// bundleSeed is seed as a bundle holds it: sorted by name, each script's
// source in scripts/NAME.js, no version history (the database keeps it),
// no users, no bootstrap admin client.
func bundleSeed(seed *engine.Seed) *engine.Seed {
	out := &engine.Seed{Config: seed.Config}
	for _, s := range seed.Scripts {
		cp := *s
		cp.Source, cp.SourceFile, cp.Versions = "", bundleScripts+"/"+s.Name+".js", nil
		out.Scripts = append(out.Scripts, &cp)
	}
	slices.SortFunc(out.Scripts, func(a, b *engine.SeedScript) int { return strings.Compare(a.Name, b.Name) })
	for _, c := range seed.Clients {
		if c.ClientID != engine.BootstrapAdminID {
			out.Clients = append(out.Clients, c)
		}
	}
	slices.SortFunc(out.Clients, func(a, b *engine.ClientDoc) int { return strings.Compare(a.ClientID, b.ClientID) })
	return out
}

// bundleYAML is keyhook.yaml: its sections in the order they import
// (config, scripts, clients), without the empty source of the scripts
// whose source is in a file.
func bundleYAML(s *engine.Seed) ([]byte, error) {
	var doc map[string]any
	raw, err := json.Marshal(s)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		return nil, err
	}
	list, _ := doc["scripts"].([]any)
	for _, sc := range list {
		if m, ok := sc.(map[string]any); ok && m["source_file"] != nil {
			delete(m, "source")
		}
	}
	var b bytes.Buffer
	b.WriteString(bundleYAMLHeader)
	for _, section := range []string{"config", "scripts", "clients"} {
		if v, ok := doc[section]; ok {
			if err := writeYAML(&b, map[string]any{section: v}); err != nil {
				return nil, err
			}
		}
	}
	return b.Bytes(), nil
}

// writeFileAtomic replaces path with data, mode 0644, through a
// temporary file renamed over it: a reader never sees half a file. A
// file that already holds data is left untouched.
func writeFileAtomic(path string, data []byte) error {
	if old, err := os.ReadFile(path); err == nil && string(old) == string(data) {
		if fi, err := os.Lstat(path); err == nil && fi.Mode().IsRegular() {
			return nil
		}
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name()) // after a failure; gone after the rename
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Chmod(bundleFileMode); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}

// bundle is a bundle read from its directory: its seed, and the file of
// each script that has one.
type bundle struct {
	dir   string
	seed  *seedFile
	files map[string]string // script name: path of its source file
}

// readBundle reads dir/keyhook.yaml as keyhook import reads a file, with
// the rules of a bundle: no users, and every source_file a plain file
// inside dir (no absolute path, no "..", no symbolic link), at most 1 MiB.
func readBundle(dir string) (*bundle, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, os.ErrNotExist):
		return nil, fmt.Errorf("bundle %s: no such directory", dir)
	case err != nil:
		return nil, fmt.Errorf("bundle %s: %v", dir, err)
	case !fi.IsDir():
		return nil, fmt.Errorf("bundle %s: is not a directory", dir)
	}
	b := &bundle{dir: dir, files: map[string]string{}}
	path := filepath.Join(dir, bundleFile)
	raw, err := readBundleFile(dir, bundleFile, maxBundleYAML)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %v", dir, err)
	}
	var files []string
	f, err := parseSeed(path, raw, func(file string) (string, error) {
		src, err := readBundleFile(dir, file, maxBundleFile)
		files = append(files, filepath.Join(dir, filepath.FromSlash(file)))
		return string(src), err
	})
	if err != nil {
		return nil, err
	}
	if n := f.sections["users"]; n != nil {
		return nil, f.errorAt(n, "users", "users are not part of a bundle (import them with keyhook import FILE)")
	}
	if n := f.sections["trusted_issuers"]; n != nil {
		return nil, f.errorAt(n, "trusted_issuers", "trusted issuers are not part of a bundle (import them with keyhook import FILE)")
	}
	i := 0
	for _, s := range f.seed.Scripts {
		if s.SourceFile != "" {
			b.files[s.Name] = files[i]
			i++
		}
	}
	b.seed = f
	return b, nil
}

// readBundleFile reads rel, a path relative to dir that must stay inside
// it and name a plain file of at most limit bytes through no symbolic
// link.
func readBundleFile(dir, rel string, limit int64) ([]byte, error) {
	if rel == "" || filepath.IsAbs(rel) || strings.HasPrefix(rel, "/") || strings.HasPrefix(rel, `\`) {
		return nil, fmt.Errorf("%q: must be a path relative to the bundle's directory", rel)
	}
	clean := filepath.Clean(filepath.FromSlash(rel))
	if clean == ".." || strings.HasPrefix(clean, ".."+string(filepath.Separator)) {
		return nil, fmt.Errorf("%q: is outside the bundle's directory", rel)
	}
	p := dir
	for _, part := range strings.Split(clean, string(filepath.Separator)) {
		p = filepath.Join(p, part)
		fi, err := os.Lstat(p)
		if err != nil {
			return nil, fmt.Errorf("%s: %v", rel, errors.Unwrap(err))
		}
		if fi.Mode()&os.ModeSymlink != 0 {
			return nil, fmt.Errorf("%s: is a symbolic link; a bundle holds plain files", rel)
		}
		if p == filepath.Join(dir, clean) {
			if !fi.Mode().IsRegular() {
				return nil, fmt.Errorf("%s: is not a plain file", rel)
			}
			if fi.Size() > limit {
				return nil, fmt.Errorf("%s: is %d bytes, more than the %d a bundle file may have", rel, fi.Size(), limit)
			}
		}
	}
	fh, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	data, err := io.ReadAll(io.LimitReader(fh, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(data)) > limit {
		return nil, fmt.Errorf("%s: is more than the %d bytes a bundle file may have", rel, limit)
	}
	return data, nil
}

// runFixtures runs the fixtures of every script of b that has a file, as
// keyhook script test does, and prints the reports of scripts whose
// fixtures fail; it reports how many passed and how many scripts have
// none.
func (b *bundle) runFixtures(c *cobra.Command, stdout io.Writer) (passed, without int, err error) {
	rt := scripts.New(scripts.Options{DefaultIsolation: hooks.IsolationProcess, Workers: 1})
	defer rt.Close()
	failed := 0
	for _, s := range b.seed.seed.Scripts {
		file, ok := b.files[s.Name]
		if !ok {
			without++
			continue
		}
		paths, err := scripts.Fixtures(file)
		if err != nil {
			return 0, 0, err
		}
		if len(paths) == 0 {
			without++
			continue
		}
		iso := hooks.Isolation(s.Isolation)
		if iso == "" {
			iso = hooks.IsolationProcess
		}
		script := scripts.OfflineScript(file, s.Source, iso)
		var fs []*scripts.Fixture
		for _, p := range paths {
			rel, _ := filepath.Rel(b.dir, p)
			if _, err := readBundleFile(b.dir, filepath.ToSlash(rel), maxBundleFile); err != nil {
				return 0, 0, fmt.Errorf("bundle %s: %v", b.dir, err)
			}
			f, err := scripts.ReadFixture(p)
			if err != nil {
				return 0, 0, err
			}
			fs = append(fs, f)
		}
		rep := runFixtures(c.Context(), rt, script, file, fs)
		passed += rep.Totals.Passed
		if rep.Totals.Failed > 0 {
			failed += rep.Totals.Failed
			fmt.Fprintf(stdout, "script %s (%s):\n", s.Name, file)
			printScriptReport(stdout, rep)
		}
	}
	if failed > 0 {
		return passed, without, fmt.Errorf("bundle %s: %d fixtures failed; nothing imported", b.dir, failed)
	}
	return passed, without, nil
}

// importBundle reads the bundle, runs its fixtures, then imports it in
// one transaction (or rolls it back, with --dry-run) and prints what
// changed.
func importBundle(c *cobra.Command, o *options, fl *bundleFlags, env lookupEnv, stdout, stderr io.Writer) error {
	b, err := readBundle(fl.dir)
	if err != nil {
		return err
	}
	passed, without, err := b.runFixtures(c, stdout)
	if err != nil {
		return err
	}
	return withData(c, o, env, stderr, func(a *app) error {
		plan, err := a.eng.ImportPlan(c.Context(), b.seed.seed, engine.ImportOptions{DryRun: fl.dryRun, Prune: fl.prune})
		if err != nil {
			return b.seed.explain(err)
		}
		fmt.Fprintf(stdout, "fixtures: %d passed, %d scripts without fixtures\n", passed, without)
		printPlan(stdout, fl, plan)
		return nil
	})
}

// printPlan writes a line per entry and a summary.
func printPlan(w io.Writer, fl *bundleFlags, plan []engine.Change) {
	counts := map[engine.ChangeAction]int{}
	for _, ch := range plan {
		what := "config"
		if ch.Section != "config" {
			what = ch.Section + " " + ch.Name
		}
		line := string(ch.Action)
		switch ch.Action {
		case engine.ChangeUpdated:
			line += " (" + strings.Join(ch.Fields, ", ") + ")"
		case engine.ChangeAbsent:
			line = "not in bundle (left alone)"
		case engine.ChangeDeleted:
			line = "deleted (not in bundle)"
		case engine.ChangeCreated:
			if ch.SecretGenerated {
				line += " (secret generated and not shown: POST /admin/v1/clients/ID/secret gives a new one)"
			}
		}
		fmt.Fprintf(w, "%s: %s\n", what, line)
		if ch.Section != "config" {
			counts[ch.Action]++
		}
	}
	summary := fmt.Sprintf("bundle %s: %d created, %d updated, %d deleted, %d unchanged, %d not in bundle",
		fl.dir, counts[engine.ChangeCreated], counts[engine.ChangeUpdated], counts[engine.ChangeDeleted],
		counts[engine.ChangeUnchanged], counts[engine.ChangeAbsent])
	if fl.dryRun {
		summary += " (dry run: nothing written)"
	}
	fmt.Fprintln(w, summary)
}
