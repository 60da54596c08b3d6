/** The examples' command line: `--name value` options and `--name` switches. */
export interface Cli {
  /** The value after `--name`, if given. */
  flag(name: string): string | undefined;
  /** Whether `--name` is present. */
  has(name: string): boolean;
}

export function parseCli(args: readonly string[] = process.argv.slice(2)): Cli {
  return {
    flag: (name) => {
      const i = args.indexOf(name);
      return i >= 0 ? args[i + 1] : undefined;
    },
    has: (name) => args.includes(name),
  };
}
