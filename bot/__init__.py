"""The customer-facing bot: the chain, chat UI, HTTP API and the command-line tool."""
