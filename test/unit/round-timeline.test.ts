import { describe, expect, it } from 'vitest';
import { roundTimeline } from '../../src/bench/round-timeline.js';

describe("a scenario's rounds as a table", () => {
  it('a row per phase, a column per round, the sums, and the phase with the largest share named', () => {
    const lines = roundTimeline([
      { step: 'launch', ms: 300 },
      { step: 'round 1: QMP device_add PHB', ms: 30 },
      { step: 'round 1: guest drmgr -c phb -r', ms: 13_430 },
      { step: 'round 1: guest drmgr -c pci -a', ms: 1_610 },
      { step: 'round 2: QMP device_add PHB', ms: 20 },
      { step: 'round 2: guest drmgr -c phb -r', ms: 23_670 },
    ]);
    expect(lines[0]).toMatch(/^phase +round 1 +round 2$/);
    expect(lines[1]).toMatch(/^QMP device_add PHB +0\.03 s +0\.02 s$/);
    expect(lines[2]).toMatch(/^guest drmgr -c phb -r +13\.43 s +23\.67 s$/);
    expect(lines[3]).toMatch(/^guest drmgr -c pci -a +1\.61 s +— *$/);
    expect(lines[4]).toMatch(/^round \(sum of its phases\) +15\.07 s +23\.69 s$/);
    expect(lines[5]).toBe('largest share of a round: guest drmgr -c phb -r (89 %, 100 %)');
  });

  it('no rounds, no table', () => {
    expect(roundTimeline([{ step: 'launch', ms: 1 }])).toEqual([]);
  });
});
