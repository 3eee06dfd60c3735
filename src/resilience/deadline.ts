/**
 * Waits for `work` at most `ms`; false when the deadline came first (the work goes on, its
 * result is ignored). Shutdown and connection attempts use it so that a peer that stops
 * answering cannot hold the bridge.
 */
export async function within(work: Promise<unknown>, ms: number): Promise<boolean> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<false>((resolve) => {
    timer = setTimeout(() => resolve(false), Math.max(0, ms));
  });
  try {
    return await Promise.race([work.then(() => true as const), deadline]);
  } finally {
    clearTimeout(timer);
  }
}
