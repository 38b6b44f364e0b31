package dovecotlab

import (
	"fmt"
	"os"
	"path/filepath"
)

// Deliver puts msg (with CRLF line ends) into user's INBOX, a Maildir at
// Dir/home/USER/Maildir (the lab's static userdb: uid and gid
// InternalUser, mail_location maildir:~/Maildir), as a new message
// owned by InternalUser. It may be called before or after Launch.
func (d *Dovecot) Deliver(user, msg string) error {
	uid, gid, err := LookupIDs(InternalUser)
	if err != nil {
		return err
	}
	return DeliverMaildir(filepath.Join(d.Dir, "home", user, "Maildir"), msg, uid, gid)
}

// DeliverMaildir creates the Maildir dir (and its parents up to the
// first existing one) owned by uid:gid and puts msg into its new/.
func DeliverMaildir(dir, msg string, uid, gid int) error {
	var made []string
	for p := dir; ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); err == nil {
			break
		}
		made = append(made, p)
	}
	for _, p := range []string{dir, dir + "/cur", dir + "/new", dir + "/tmp"} {
		if err := os.MkdirAll(p, 0o700); err != nil {
			return err
		}
	}
	f := filepath.Join(dir, "new", fmt.Sprintf("1700000000.M%dP1.lab", len(made)))
	if err := os.WriteFile(f, []byte(msg), 0o600); err != nil {
		return err
	}
	for _, p := range append(append(made, dir+"/cur", dir+"/new", dir+"/tmp"), f) {
		if err := os.Chown(p, uid, gid); err != nil {
			return err
		}
	}
	return nil
}
