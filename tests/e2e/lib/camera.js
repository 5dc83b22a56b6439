'use strict';
// Fake cameras that differ from page to page. Chromium's --use-fake-device-for-media-stream
// gives every page of a browser the same animated picture; a test that must tell who is
// who in a mixed grid or a switched stream gives each page its own instead:
//
//   await useColourCamera(page, i)   before page.goto: getUserMedia's video becomes a
//                                    320x240 canvas at 15 fps (light on a 2-core machine) of
//                                    COLOURS[i].rgb with a white square moving at a speed of
//                                    its own and a white bar along the bottom growing 2 px a
//                                    frame (audio stays Chromium's fake microphone)
//   classifyColour([r, g, b])        -> the name of the nearest colour of COLOURS, or null
//                                    when none is near (black, white, a mix)
//   await useNoiseCamera(page, {width, height})
//                                    before page.goto: getUserMedia's video becomes a canvas
//                                    of that size at 15 fps filled each frame with new random
//                                    4x4-pixel blocks: a picture the encoder cannot make
//                                    cheap, so a sender's bitrate is what its bandwidth
//                                    estimate lets it send (Chromium's fake camera needs
//                                    about 400 kbit/s at 960x540, whatever it may send)
//
// The square goes to and fro, so two pictures taken either side of a turn can be the same
// (assertVideoPlaying's samples 2-3 s apart once were: 'picture is frozen', 0 % changed);
// the bar's length repeats only every 160 frames (10.6 s), so no two pictures less than that
// apart are the same.

const COLOURS = [
  { name: 'red', rgb: [200, 40, 40], speed: 8, y: 30 },
  { name: 'green', rgb: [40, 170, 40], speed: 10, y: 90 },
  { name: 'blue', rgb: [40, 60, 210], speed: 12, y: 150 },
  { name: 'yellow', rgb: [210, 190, 40], speed: 14, y: 60 },
];

// Runs in the page before its scripts.
function installInPage({ rgb, speed, y }) {
  const devices = navigator.mediaDevices;
  const real = devices.getUserMedia.bind(devices);
  devices.getUserMedia = async (constraints = {}) => {
    const stream = new MediaStream();
    if (constraints.audio) {
      const audio = await real({ audio: constraints.audio });
      for (const track of audio.getAudioTracks()) stream.addTrack(track);
    }
    if (constraints.video) {
      const canvas = document.createElement('canvas');
      canvas.width = 320;
      canvas.height = 240;
      const ctx = canvas.getContext('2d');
      const size = 48;
      const span = canvas.width - size;
      let frame = 0;
      const draw = () => {
        ctx.fillStyle = `rgb(${rgb.join(',')})`;
        ctx.fillRect(0, 0, canvas.width, canvas.height);
        // A triangle wave: the square goes left to right and back.
        const p = (frame * speed) % (2 * span);
        ctx.fillStyle = '#fff';
        ctx.fillRect(p < span ? p : 2 * span - p, y, size, size);
        ctx.fillRect(0, canvas.height - 4, (frame * 2) % canvas.width, 4);
        frame += 1;
      };
      draw();
      setInterval(draw, 66);
      for (const track of canvas.captureStream(15).getVideoTracks()) stream.addTrack(track);
    }
    return stream;
  };
}

// Runs in the page before its scripts.
function installNoiseInPage({ width, height }) {
  const devices = navigator.mediaDevices;
  devices.getUserMedia = async (constraints = {}) => {
    if (constraints.audio) throw new Error('the noise camera has no microphone');
    const canvas = document.createElement('canvas');
    canvas.width = width;
    canvas.height = height;
    const ctx = canvas.getContext('2d');
    ctx.imageSmoothingEnabled = false;
    // The blocks: a picture of a sixteenth of the pixels, drawn scaled up 4 times.
    const small = new OffscreenCanvas(Math.ceil(width / 4), Math.ceil(height / 4));
    const sctx = small.getContext('2d');
    const img = sctx.createImageData(small.width, small.height);
    const words = new Uint32Array(img.data.buffer);
    const draw = () => {
      // getRandomValues fills at most 65536 bytes a call.
      for (let i = 0; i < words.length; i += 16384) crypto.getRandomValues(words.subarray(i, i + 16384));
      for (let i = 0; i < words.length; i++) words[i] |= 0xff000000;
      sctx.putImageData(img, 0, 0);
      ctx.drawImage(small, 0, 0, width, height);
    };
    draw();
    setInterval(draw, 66);
    return canvas.captureStream(15);
  };
}

async function useNoiseCamera(page, { width, height }) {
  await page.addInitScript(installNoiseInPage, { width, height });
}

async function useColourCamera(page, index) {
  const { rgb, speed, y } = COLOURS[index];
  await page.addInitScript(installInPage, { rgb, speed, y });
  return COLOURS[index].name;
}

function classifyColour(rgb) {
  let best = null;
  let bestDistance = Infinity;
  for (const c of COLOURS) {
    const d = Math.hypot(rgb[0] - c.rgb[0], rgb[1] - c.rgb[1], rgb[2] - c.rgb[2]);
    if (d < bestDistance) {
      best = c.name;
      bestDistance = d;
    }
  }
  return bestDistance < 70 ? best : null;
}

module.exports = { COLOURS, useColourCamera, useNoiseCamera, classifyColour };
