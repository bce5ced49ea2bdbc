/** Tests need real tools; a missing one fails loudly with the command that installs it. */
import { which } from "bun";
import { installCommand, TOOLS } from "../../scripts/ensure-tools.ts";

const SBIN = ["/usr/sbin", "/sbin", "/usr/local/sbin"];

/** Absolute path of a tool, or an Error naming the install command. */
export function requireTool(name: string): string {
  const found = which(name) ?? which(name, { PATH: SBIN.join(":") });
  if (!found) {
    // the package comes from the list `npm test` checks first (scripts/ensure-tools.ts)
    const tool = TOOLS.find((t) => t.name === name) ?? { name, pkg: name };
    throw new Error(`${name} is required by the test suite but is not installed; install it with: ${installCommand([tool], false)}`);
  }
  return found;
}
