/**
 * How a CLI command reaches the hub: the access token from `--token <t>` or, better (it stays
 * out of the process list and the shell history), the `HF_TOKEN` environment variable, and the
 * hub root from `HF_ENDPOINT` (default https://huggingface.co), as huggingface_hub reads them.
 * The runner (scripts/cli.mjs) hands those two variables to the page in `args.env`; nothing here
 * prints them, and the hub client sends the token to the hub's own hosts only.
 */
import { HF_ENDPOINT, HubClient, type HubOptions } from '../load/hub';
import { CliInputError, type CliArgs } from './io';

/** The token the command line gave (`--token` first, then `HF_TOKEN`), if any. */
export function cliHubToken(args: CliArgs): string | undefined {
  const flag = args.flags.token;
  if (flag === true || (typeof flag === 'string' && flag.trim() === '')) throw new CliInputError('--token needs the access token (or set HF_TOKEN in the environment instead)');
  return (typeof flag === 'string' ? flag : args.env?.HF_TOKEN)?.trim() || undefined;
}

export function cliHubClient(args: CliArgs, options: Omit<HubOptions, 'token' | 'endpoint'> = {}): HubClient {
  return new HubClient({ ...options, endpoint: args.env?.HF_ENDPOINT || HF_ENDPOINT, token: cliHubToken(args) });
}

/** `owner/name` (a hub repo) as the runner leaves it: a path that exists on disk was made absolute. */
export function isHubRepoId(spec: string): boolean {
  return /^[\w.-]+\/[\w.-]+$/.test(spec) && !spec.split('/').some((part) => /^\.+$/.test(part));
}
