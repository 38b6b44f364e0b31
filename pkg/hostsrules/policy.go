package hostsrules

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"time"

	"github.com/tcpwrapd/tcpwrapd/pkg/hostsrules/internal/xgets"
)

// FileState says how a table or /file list was found when the policy was
// loaded. The states have libwrap's meaning (hosts_access(5)).
type FileState int

const (
	// FileOK: the file was read completely.
	FileOK FileState = iota
	// FileMissing: the file does not exist (ENOENT, also a dangling
	// symlink); it counts as empty.
	FileMissing
	// FileDir: the path is a directory; it counts as empty.
	FileDir
	// FileUnreadable: the file exists but cannot be opened or read (EACCES,
	// ELOOP, ...). An unreadable hosts.allow is skipped; an unreadable
	// hosts.deny denies every request.
	FileUnreadable
)

// String returns "ok", "missing", "directory" or "unreadable".
func (s FileState) String() string {
	switch s {
	case FileOK:
		return "ok"
	case FileMissing:
		return "missing"
	case FileDir:
		return "directory"
	default:
		return "unreadable"
	}
}

// FileInfo describes one file a policy was built from: a table or a /file
// pattern list referenced by a rule.
type FileInfo struct {
	Path    string    `json:"path"`
	State   FileState `json:"state"`
	ModTime time.Time `json:"mtime,omitzero"`
	Size    int64     `json:"size"`
	// Err is the open or read error of an unreadable file.
	Err error `json:"-"`
}

// Source is one table's content, as read in one piece. Load builds Sources
// from files; tests and tools may build them directly.
type Source struct {
	// Name is the path used in messages (e.g. "/etc/hosts.allow").
	Name string
	// State is how the file was found; Data is only used when FileOK.
	State FileState
	Data  []byte
	// Err is the open/read error when State is FileUnreadable.
	Err error
	// ModTime is the file's modification time, for FileInfo.
	ModTime time.Time
}

// ReadSource reads the table at path in one piece and classifies failures
// as libwrap does: ENOENT is FileMissing, a directory is FileDir, and any
// other error is FileUnreadable. It never returns a partly read file.
func ReadSource(path string) Source {
	src, f, size := openSource(path)
	if f == nil {
		return src
	}
	defer f.Close()
	data, err := readAll(f, size)
	if err != nil {
		return readFailed(src, err)
	}
	src.Data = data
	return src
}

// openSource opens the table at path. It returns the open file and its
// size, or a nil file and the Source of a missing, directory or
// unreadable table.
func openSource(path string) (Source, *os.File, int64) {
	src := Source{Name: path}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			src.State = FileMissing
		} else {
			src.State = FileUnreadable
			src.Err = err
		}
		return src, nil, 0
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		src.State = FileUnreadable
		src.Err = err
		return src, nil, 0
	}
	src.ModTime = st.ModTime()
	if st.IsDir() {
		f.Close()
		src.State = FileDir
		return src, nil, 0
	}
	return src, f, st.Size()
}

// readFailed classifies a read error: a directory (EISDIR) is FileDir,
// anything else FileUnreadable.
func readFailed(src Source, err error) Source {
	if errors.Is(err, errIsDir) || strings.Contains(err.Error(), "is a directory") {
		src.State = FileDir
		return src
	}
	src.State = FileUnreadable
	src.Err = err
	return src
}

// Load reads hosts.allow and hosts.deny from the given paths, compiles them
// and returns the immutable policy. It never fails: missing, unreadable and
// malformed files take the meaning libwrap gives them, and every problem is
// reported in Policy.Diagnostics. /file pattern lists named by the rules are
// read at load time too, and listed by Policy.Files.
//
// Load gives the policy Compile(ReadSource(allowPath), ReadSource(denyPath))
// gives, but compiles each table while reading it, in blocks of 64 KiB, so
// that a large table is never in memory as text: a read error part way
// makes the table unreadable as a whole, as ReadSource would.
func Load(allowPath, denyPath string) *Policy {
	allow, d1, l1, f1 := loadTable(allowPath)
	deny, d2, l2, f2 := loadTable(denyPath)
	return newPolicy(allow, deny, append(d1, d2...), append(l1, l2...), f1, f2)
}

// loadTable reads and compiles the table at path, streaming.
func loadTable(path string) (*table, []Diagnostic, []string, FileInfo) {
	src, f, size := openSource(path)
	if f != nil {
		defer f.Close()
		t := &table{name: path}
		r := xgets.New(f)
		diags, lists := t.build(r, size)
		switch {
		case r.Err() == nil || r.Err() == io.EOF:
			if r.Err() == io.EOF {
				size = r.BytesRead() // as much as was there
			}
			return t, diags, lists, FileInfo{Path: path, ModTime: src.ModTime, Size: size}
		default:
			src = readFailed(src, r.Err())
		}
	}
	t, diags, lists := parseTable(src)
	return t, diags, lists, FileInfo{Path: path, State: src.State, ModTime: src.ModTime, Err: src.Err}
}

// MarshalText encodes the state as "ok", "missing", "directory" or
// "unreadable".
func (s FileState) MarshalText() ([]byte, error) { return []byte(s.String()), nil }

// UnmarshalText decodes the words MarshalText produces.
func (s *FileState) UnmarshalText(b []byte) error {
	for _, v := range []FileState{FileOK, FileMissing, FileDir, FileUnreadable} {
		if v.String() == string(b) {
			*s = v
			return nil
		}
	}
	return fmt.Errorf("unknown file state %q", b)
}
