/**
 * How the wrapper tells its server child that it already holds the lock and started the
 * status file: two environment variables (never argv, so `ps` shows nothing of them).
 */
export const ENV_PARENT_RUN = "SHOOT_PARENT_RUN";
export const ENV_LOCK_TOKEN = "SHOOT_LOCK_TOKEN";

export function parentRunFromEnv(env: Record<string, string | undefined>): { run: string; lockToken: string } | undefined {
  const run = env[ENV_PARENT_RUN];
  const lockToken = env[ENV_LOCK_TOKEN];
  return run && lockToken ? { run, lockToken } : undefined;
}
