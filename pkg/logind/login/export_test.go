package login

// IdentityOf is cl.identity() for the external tests.
func IdentityOf(cl *Client) identity { return cl.identity() }
