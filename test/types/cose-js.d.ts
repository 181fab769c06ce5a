declare module 'cose-js' {
  const cose: {
    sign: {
      verify(
        payload: Buffer,
        verifier: { key: { x: Buffer; y: Buffer; kid?: string } },
        options?: { defaultType?: number },
      ): Promise<Buffer>;
    };
  };
  export default cose;
}
