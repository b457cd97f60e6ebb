"""Error codes shared by the core, the JSON-RPC protocol and the command line (stdlib only).

One table so that a host client can re-raise exactly what the core raised, and a farm
wrapper can read the same meaning from the process exit status.
"""

# JSON-RPC 2.0 reserved codes.
PARSE_ERROR = -32700
INVALID_REQUEST = -32600
METHOD_NOT_FOUND = -32601
INVALID_PARAMS = -32602
INTERNAL_ERROR = -32603

# Application codes (JSON-RPC "server error" range -32000..-32099).
SMITE_ERROR = -32000
BAD_INPUT = -32001
OUTPUT_ERROR = -32002
MISSING_MODEL = -32003
OUT_OF_MEMORY = -32004
CANCELLED = -32005
SERVER_BUSY = -32006

# Process exit statuses for the command line (documented in README.md).
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_BAD_INPUT = 2
EXIT_MISSING_MODEL = 3
EXIT_OUT_OF_MEMORY = 4
EXIT_CANCELLED = 5
