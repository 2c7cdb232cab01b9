//! Redis's geohash (geohash.c, geohash_helper.c): 52-bit interleaved scores, the nine cells a
//! search covers, and haversine distances on Redis's earth radius. The same floating-point
//! steps in the same order as Redis, so that scores, cell choices and distances are Redis's
//! to the bit (libm's sin, cos and asin are the ones Redis calls).

pub const STEP_MAX: u8 = 26;
pub const LAT_MIN: f64 = -85.051_128_78;
pub const LAT_MAX: f64 = 85.051_128_78;
pub const LONG_MIN: f64 = -180.0;
pub const LONG_MAX: f64 = 180.0;
const EARTH_RADIUS_IN_METERS: f64 = 6_372_797.560_856;
const MERCATOR_MAX: f64 = 20_037_726.37;
const D_R: f64 = std::f64::consts::PI / 180.0;

#[derive(Clone, Copy, PartialEq, Debug)]
pub struct Hash {
    pub bits: u64,
    pub step: u8,
}

impl Hash {
    /// Redis's "zeroed" cell: one a search leaves out.
    const NONE: Hash = Hash { bits: 0, step: 0 };

    fn is_none(self) -> bool {
        self == Hash::NONE
    }

    /// The cell's bits as the high bits of a 52-bit score.
    pub fn align52(self) -> u64 {
        self.bits << (52 - self.step as u32 * 2)
    }
}

#[derive(Clone, Copy)]
pub struct Range {
    pub min: f64,
    pub max: f64,
}

const WGS84_LONG: Range = Range {
    min: LONG_MIN,
    max: LONG_MAX,
};
const WGS84_LAT: Range = Range {
    min: LAT_MIN,
    max: LAT_MAX,
};

#[derive(Clone, Copy)]
pub struct Area {
    pub longitude: Range,
    pub latitude: Range,
}

/// Spreads the 32 bits of `x` over the even bits and those of `y` over the odd bits.
fn interleave(x: u32, y: u32) -> u64 {
    fn spread(v: u32) -> u64 {
        let mut v = v as u64;
        v = (v | v << 16) & 0x0000_ffff_0000_ffff;
        v = (v | v << 8) & 0x00ff_00ff_00ff_00ff;
        v = (v | v << 4) & 0x0f0f_0f0f_0f0f_0f0f;
        v = (v | v << 2) & 0x3333_3333_3333_3333;
        (v | v << 1) & 0x5555_5555_5555_5555
    }
    spread(x) | spread(y) << 1
}

/// The even bits of `v` and its odd bits, as two 32-bit numbers.
fn deinterleave(v: u64) -> (u32, u32) {
    fn squash(v: u64) -> u32 {
        let mut v = v & 0x5555_5555_5555_5555;
        v = (v | v >> 1) & 0x3333_3333_3333_3333;
        v = (v | v >> 2) & 0x0f0f_0f0f_0f0f_0f0f;
        v = (v | v >> 4) & 0x00ff_00ff_00ff_00ff;
        v = (v | v >> 8) & 0x0000_ffff_0000_ffff;
        (v | v >> 16) as u32
    }
    (squash(v), squash(v >> 1))
}

/// The cell of `step` (1..=32) bits per axis holding a point, within these ranges; None
/// outside them or Redis's coordinate limits.
pub fn encode_in(
    long_range: Range,
    lat_range: Range,
    longitude: f64,
    latitude: f64,
    step: u8,
) -> Option<Hash> {
    let outside_limits =
        !(LONG_MIN..=LONG_MAX).contains(&longitude) || !(LAT_MIN..=LAT_MAX).contains(&latitude);
    let outside_ranges = latitude < lat_range.min
        || latitude > lat_range.max
        || longitude < long_range.min
        || longitude > long_range.max;
    if step == 0 || step > 32 || outside_limits || outside_ranges {
        return None;
    }
    let scale = (1u64 << step) as f64;
    let lat_offset = (latitude - lat_range.min) / (lat_range.max - lat_range.min) * scale;
    let long_offset = (longitude - long_range.min) / (long_range.max - long_range.min) * scale;
    Some(Hash {
        bits: interleave(lat_offset as u32, long_offset as u32),
        step,
    })
}

pub fn encode(longitude: f64, latitude: f64, step: u8) -> Option<Hash> {
    encode_in(WGS84_LONG, WGS84_LAT, longitude, latitude, step)
}

/// The score GEOADD stores for a point.
pub fn score(longitude: f64, latitude: f64) -> Option<u64> {
    encode(longitude, latitude, STEP_MAX).map(Hash::align52)
}

fn decode(hash: Hash) -> Option<Area> {
    if hash.is_none() {
        return None;
    }
    let (lat_cell, long_cell) = deinterleave(hash.bits);
    let cells = (1u64 << hash.step) as f64;
    let lat_scale = WGS84_LAT.max - WGS84_LAT.min;
    let long_scale = WGS84_LONG.max - WGS84_LONG.min;
    let edge = |min: f64, cell: u32, scale: f64| min + (cell as f64 * 1.0 / cells) * scale;
    Some(Area {
        latitude: Range {
            min: edge(WGS84_LAT.min, lat_cell, lat_scale),
            max: edge(WGS84_LAT.min, lat_cell.wrapping_add(1), lat_scale),
        },
        longitude: Range {
            min: edge(WGS84_LONG.min, long_cell, long_scale),
            max: edge(WGS84_LONG.min, long_cell.wrapping_add(1), long_scale),
        },
    })
}

/// The point a score stands for: the centre of its cell, as (longitude, latitude).
pub fn decode_score(score: f64) -> Option<(f64, f64)> {
    let area = decode(Hash {
        bits: score as u64,
        step: STEP_MAX,
    })?;
    let longitude = ((area.longitude.min + area.longitude.max) / 2.0).clamp(LONG_MIN, LONG_MAX);
    let latitude = ((area.latitude.min + area.latitude.max) / 2.0).clamp(LAT_MIN, LAT_MAX);
    Some((longitude, latitude))
}

/// The standard 11-character geohash of a score (GEOHASH): re-encoded on latitudes -90..90,
/// the last character always '0' as only 52 bits exist.
pub fn standard_geohash(score: f64) -> Option<[u8; 11]> {
    const ALPHABET: &[u8; 32] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    let (longitude, latitude) = decode_score(score)?;
    let whole_lat = Range {
        min: -90.0,
        max: 90.0,
    };
    let hash = encode_in(WGS84_LONG, whole_lat, longitude, latitude, STEP_MAX)?;
    let mut out = [b'0'; 11];
    for (i, c) in out.iter_mut().take(10).enumerate() {
        *c = ALPHABET[((hash.bits >> (52 - (i + 1) * 5)) & 0x1f) as usize];
    }
    Some(out)
}

/// Moves a cell one step along longitude (the odd bits) or latitude (the even bits).
fn moved(hash: Hash, along_longitude: bool, forward: bool) -> Hash {
    let (moving_mask, fixed_mask) = if along_longitude {
        (0xaaaa_aaaa_aaaa_aaaa_u64, 0x5555_5555_5555_5555_u64)
    } else {
        (0x5555_5555_5555_5555, 0xaaaa_aaaa_aaaa_aaaa)
    };
    let shift = 64 - hash.step as u32 * 2;
    let moving = hash.bits & moving_mask;
    let fixed = hash.bits & fixed_mask;
    let zz = fixed_mask >> shift;
    let moved = if forward {
        moving.wrapping_add(zz + 1)
    } else {
        (moving | zz).wrapping_sub(zz + 1)
    };
    Hash {
        bits: (moved & (moving_mask >> shift)) | fixed,
        step: hash.step,
    }
}

/// What a search looks around: a radius, or a box of this width and height, in `unit`s.
#[derive(Clone, Copy)]
pub enum Extent {
    Radius(f64),
    Box { width: f64, height: f64 },
}

#[derive(Clone, Copy)]
pub struct Shape {
    pub longitude: f64,
    pub latitude: f64,
    pub extent: Extent,
    /// Metres per unit.
    pub unit: f64,
}

fn estimate_steps(mut range_meters: f64, latitude: f64) -> u8 {
    if range_meters == 0.0 {
        return STEP_MAX;
    }
    let mut step: i32 = 1;
    while range_meters < MERCATOR_MAX {
        range_meters *= 2.0;
        step += 1;
    }
    step -= 2;
    if !(-66.0..=66.0).contains(&latitude) {
        step -= 1;
        if !(-80.0..=80.0).contains(&latitude) {
            step -= 1;
        }
    }
    step.clamp(1, STEP_MAX as i32) as u8
}

impl Shape {
    /// Half the height and half the width of the searched extent, in metres.
    fn half_sides(&self) -> (f64, f64) {
        match self.extent {
            Extent::Radius(r) => (self.unit * r, self.unit * r),
            Extent::Box { width, height } => {
                (self.unit * (height / 2.0), self.unit * (width / 2.0))
            }
        }
    }

    /// The bounding box (min longitude, min latitude, max longitude, max latitude).
    fn bounds(&self) -> [f64; 4] {
        let (height, width) = self.half_sides();
        let lat_delta = height / EARTH_RADIUS_IN_METERS / D_R;
        let long_delta = |lat: f64| width / EARTH_RADIUS_IN_METERS / (lat * D_R).cos() / D_R;
        let long_delta_top = long_delta(self.latitude + lat_delta);
        let long_delta_bottom = long_delta(self.latitude - lat_delta);
        let long_delta = if self.latitude < 0.0 {
            long_delta_bottom
        } else {
            long_delta_top
        };
        [
            self.longitude - long_delta,
            self.latitude - lat_delta,
            self.longitude + long_delta,
            self.latitude + lat_delta,
        ]
    }

    /// The cells to scan, in Redis's order (centre, N, S, E, W, NE, NW, SE, SW), with the
    /// ones that cannot hold a match left out and repeats of the previous one dropped.
    pub fn cells(&self) -> Vec<Hash> {
        let [min_lon, min_lat, max_lon, max_lat] = self.bounds();
        let radius_meters = self.unit
            * match self.extent {
                Extent::Radius(r) => r,
                Extent::Box { width, height } => {
                    ((width / 2.0) * (width / 2.0) + (height / 2.0) * (height / 2.0)).sqrt()
                }
            };
        let mut steps = estimate_steps(radius_meters, self.latitude);
        let around = |steps| {
            let hash = encode(self.longitude, self.latitude, steps).unwrap_or(Hash {
                bits: 0,
                step: steps,
            });
            let n = moved(hash, false, true);
            let s = moved(hash, false, false);
            let e = moved(hash, true, true);
            let w = moved(hash, true, false);
            let ne = moved(e, false, true);
            let nw = moved(w, false, true);
            let se = moved(e, false, false);
            let sw = moved(w, false, false);
            [hash, n, s, e, w, ne, nw, se, sw]
        };
        let mut cells = around(steps);
        let area_of = |hash: Hash| decode(hash).map(|a| (a.latitude, a.longitude));
        // The estimated step can be too coarse near the covered area's edges.
        let [_, n, s, e, w, ..] = cells.map(area_of);
        let too_coarse = n.is_some_and(|(lat, _)| lat.max < max_lat)
            || s.is_some_and(|(lat, _)| lat.min > min_lat)
            || e.is_some_and(|(_, lon)| lon.max < max_lon)
            || w.is_some_and(|(_, lon)| lon.min > min_lon);
        if steps > 1 && too_coarse {
            steps -= 1;
            cells = around(steps);
        }
        if steps >= 2
            && let Some(area) = decode(cells[0])
        {
            let [_, n, s, e, w, ne, nw, se, sw] = &mut cells;
            let drop = |cells: [&mut Hash; 3]| cells.into_iter().for_each(|c| *c = Hash::NONE);
            if area.latitude.min < min_lat {
                drop([s, sw, se]);
            }
            if area.latitude.max > max_lat {
                drop([n, ne, nw]);
            }
            if area.longitude.min < min_lon {
                drop([w, sw, nw]);
            }
            if area.longitude.max > max_lon {
                drop([e, se, ne]);
            }
        }
        let mut kept: Vec<Hash> = Vec::with_capacity(9);
        for cell in cells {
            // Huge radii make neighbours repeat: Redis skips a cell equal to the last scanned.
            if !cell.is_none() && kept.last() != Some(&cell) {
                kept.push(cell);
            }
        }
        kept
    }

    /// The distance in metres from the centre to a point inside the shape; None outside.
    pub fn distance_if_within(&self, longitude: f64, latitude: f64) -> Option<f64> {
        match self.extent {
            Extent::Radius(r) => {
                let d = distance(self.longitude, self.latitude, longitude, latitude);
                (d <= r * self.unit).then_some(d)
            }
            Extent::Box { width, height } => {
                let (width, height) = (width * self.unit, height * self.unit);
                if lat_distance(latitude, self.latitude) > height / 2.0 {
                    return None;
                }
                if distance(longitude, latitude, self.longitude, latitude) > width / 2.0 {
                    return None;
                }
                Some(distance(self.longitude, self.latitude, longitude, latitude))
            }
        }
    }
}

/// The scores a cell's points have: `min..max`, max excluded.
pub fn score_range(cell: Hash) -> (u64, u64) {
    let next = Hash {
        bits: cell.bits + 1,
        step: cell.step,
    };
    (cell.align52(), next.align52())
}

fn lat_distance(lat1: f64, lat2: f64) -> f64 {
    EARTH_RADIUS_IN_METERS * (lat2 * D_R - lat1 * D_R).abs()
}

/// Haversine distance in metres, as Redis computes it.
pub fn distance(lon1: f64, lat1: f64, lon2: f64, lat2: f64) -> f64 {
    let (lon1r, lon2r) = (lon1 * D_R, lon2 * D_R);
    let v = ((lon2r - lon1r) / 2.0).sin();
    if v == 0.0 {
        return lat_distance(lat1, lat2);
    }
    let (lat1r, lat2r) = (lat1 * D_R, lat2 * D_R);
    let u = ((lat2r - lat1r) / 2.0).sin();
    let a = u * u + lat1r.cos() * lat2r.cos() * v * v;
    2.0 * EARTH_RADIUS_IN_METERS * a.sqrt().asin()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_and_points_are_redis_s() {
        // redis-server 7.0.15: GEOADD g 13.361389 38.115556 Palermo; ZSCORE, GEOPOS, GEOHASH.
        let s = score(13.361389, 38.115556).unwrap();
        assert_eq!(s, 3479099956230698);
        let (lon, lat) = decode_score(s as f64).unwrap();
        assert_eq!(format!("{lon:.17}"), "13.36138933897018433");
        assert_eq!(format!("{lat:.17}"), "38.11555639549629859");
        assert_eq!(&standard_geohash(s as f64).unwrap(), b"sqc8b49rny0");
        let catania = decode_score(score(15.087269, 37.502669).unwrap() as f64).unwrap();
        let d = distance(lon, lat, catania.0, catania.1) / 1000.0;
        assert_eq!(format!("{d:.4}"), "166.2742");
    }

    #[test]
    fn interleaving_round_trips() {
        for (x, y) in [
            (0u32, 0u32),
            (1, 0),
            (0, 1),
            (0xdead_beef, 0x1234_5678),
            (u32::MAX, 7),
        ] {
            assert_eq!(deinterleave(interleave(x, y)), (x, y));
        }
    }
}
