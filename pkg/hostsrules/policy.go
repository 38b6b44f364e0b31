package hostsrules

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"time"
)

// FileState says how a table or /file list was found when the policy was
// loaded. The states have libwrap's meaning (hosts_access(5), spec §3).
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
	src := Source{Name: path}
	f, err := os.Open(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			src.State = FileMissing
		} else {
			src.State = FileUnreadable
			src.Err = err
		}
		return src
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		src.State = FileUnreadable
		src.Err = err
		return src
	}
	src.ModTime = st.ModTime()
	if st.IsDir() {
		src.State = FileDir
		return src
	}
	data, err := readAll(f, st.Size())
	if err != nil {
		if errors.Is(err, errIsDir) {
			src.State = FileDir
			return src
		}
		src.State = FileUnreadable
		src.Err = err
		return src
	}
	src.Data = data
	return src
}

// Load reads hosts.allow and hosts.deny from the given paths, compiles them
// and returns the immutable policy. It never fails: missing, unreadable and
// malformed files take the meaning libwrap gives them, and every problem is
// reported in Policy.Diagnostics. /file pattern lists named by the rules are
// read at load time too, and listed by Policy.Files.
func Load(allowPath, denyPath string) *Policy {
	return Compile(ReadSource(allowPath), ReadSource(denyPath))
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
