"""Who is asking and what they may do: passwords, signed tokens, scopes and grants."""
