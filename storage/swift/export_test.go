package swift

// Unauthenticate drops the driver's token so that its next request
// authenticates again, as after a token expiry.
func Unauthenticate(d *Driver) { d.conn.UnAuthenticate() }

// SetToken replaces the driver's token, as if it had expired on the
// server.
func SetToken(d *Driver, token string) { d.conn.AuthToken = token }
