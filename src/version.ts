// Filled in by scripts/build.ts (Bun.build `define`); a run from source says "dev".
declare const SHOOT_BUILD_VERSION: string | undefined;
declare const SHOOT_BUILD_TARGET: string | undefined;

export const VERSION: string = typeof SHOOT_BUILD_VERSION === "string" ? SHOOT_BUILD_VERSION : "0.1.0-dev";
export const TARGET: string = typeof SHOOT_BUILD_TARGET === "string" ? SHOOT_BUILD_TARGET : `source (bun ${process.versions.bun})`;
