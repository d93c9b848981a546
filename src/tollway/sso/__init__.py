"""Console single sign-on through OpenID Connect (docs/console.md)."""
