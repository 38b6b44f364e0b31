package login

// reportLogin records a successful hand-off of the client as user with
// mech to the post-login process mailPID, for loginctl's view of who is
// logged in (the who helper fills it in).
func (cl *Client) reportLogin(user, mech string, mailPID uint32) {}
