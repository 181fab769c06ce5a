/**
 * Reads the QR code on a pile with the camera: the browser's BarcodeDetector where it exists
 * (Chrome on Android), otherwise our own small decoder (./qr-decoder.ts) on canvas frames, loaded
 * only when needed, so it does not weigh on the app's start. Resolves with the first decoded
 * text; `stop()` releases the camera.
 * @module
 */

interface DetectedBarcode {
  readonly rawValue: string;
}
interface BarcodeDetectorLike {
  detect(source: CanvasImageSource): Promise<DetectedBarcode[]>;
}
type BarcodeDetectorCtor = new (options: { formats: string[] }) => BarcodeDetectorLike;

export class CameraUnavailableError extends Error {
  override readonly name = 'CameraUnavailableError';
}

export interface CameraScan {
  readonly result: Promise<string>;
  stop(): void;
}

export async function scanWithCamera(video: HTMLVideoElement): Promise<CameraScan> {
  if (!navigator.mediaDevices?.getUserMedia) throw new CameraUnavailableError('no camera API');
  let stream: MediaStream;
  try {
    stream = await navigator.mediaDevices.getUserMedia({
      video: { facingMode: 'environment' },
      audio: false,
    });
  } catch (err) {
    throw new CameraUnavailableError('camera refused or missing', { cause: err });
  }
  video.srcObject = stream;
  video.setAttribute('playsinline', '');
  await video.play();
  let stopped = false;
  const stop = () => {
    stopped = true;
    for (const track of stream.getTracks()) track.stop();
    video.srcObject = null;
  };
  const Detector = (globalThis as { BarcodeDetector?: BarcodeDetectorCtor }).BarcodeDetector;
  const detector = Detector ? new Detector({ formats: ['qr_code'] }) : undefined;
  const canvas = document.createElement('canvas');
  const result = (async () => {
    const decodeQr = detector ? undefined : (await import('./qr-decoder.ts')).decodeQr;
    while (!stopped) {
      await new Promise((r) => setTimeout(r, 200));
      if (video.videoWidth === 0) continue;
      if (detector) {
        const found = await detector.detect(video).catch(() => []);
        if (found[0]) {
          stop();
          return found[0].rawValue;
        }
        continue;
      }
      canvas.width = video.videoWidth;
      canvas.height = video.videoHeight;
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      if (!ctx || !decodeQr) continue;
      ctx.drawImage(video, 0, 0);
      const image = ctx.getImageData(0, 0, canvas.width, canvas.height);
      const text = decodeQr(image.data, image.width, image.height);
      if (text !== undefined) {
        stop();
        return text;
      }
    }
    throw new CameraUnavailableError('scan stopped');
  })();
  return { result, stop };
}
