import { defineCommand } from "citty";
import { runDemo } from "../../core/setup/demo.ts";
import { spawner } from "../../io/process.ts";
import { selfArgv, selfCommand } from "../self.ts";
import { abortOnSignals } from "../signals.ts";

export default defineCommand({
  meta: { name: "demo", description: "Back up sample files, pull and verify the copy, run again for code 9: all in one directory, nothing configured" },
  args: {
    dir: { type: "string", description: "Work in DIR (new or empty) instead of a fresh temporary directory", valueHint: "DIR" },
    ssh: { type: "boolean", description: "Pull over ssh through a throwaway sshd on 127.0.0.1 (needs openssh-server) instead of a local path" },
  },
  async run({ args }) {
    const signals = abortOnSignals();
    try {
      await runDemo({
        dir: args.dir,
        ssh: Boolean(args.ssh),
        self: selfArgv(),
        selfShown: selfCommand(),
        spawner,
        env: process.env,
        print: (line) => console.log(line),
        signal: signals.signal,
      });
      return 0;
    } finally {
      signals.dispose();
    }
  },
});
