// Filled in by scripts/build.ts (Bun.build `define`). From source: the package's version marked
// "-dev", and "source" where a binary names its platform: `shoot 0.1.0-dev (source, bun 1.4.4)`.
import pkg from "../package.json" with { type: "json" };

declare const SHOOT_BUILD_VERSION: string | undefined;
declare const SHOOT_BUILD_TARGET: string | undefined;

export const VERSION: string = typeof SHOOT_BUILD_VERSION === "string" ? SHOOT_BUILD_VERSION : `${pkg.version}-dev`;
export const TARGET: string = typeof SHOOT_BUILD_TARGET === "string" ? SHOOT_BUILD_TARGET : `source, bun ${process.versions.bun}`;
