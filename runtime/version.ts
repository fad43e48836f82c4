/** burrow's version: the CLI's `--version`, and what the compat executables report beside the tool's. */
export const VERSION = '0.1.0';
