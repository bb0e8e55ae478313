//! Channel mapping to the stereo layout the model expects.

use symphonia::core::audio::{Channels, Position};

/// Maps `channels` (as decoded, with their layout when known) to stereo.
///
/// Mono becomes dual-mono. Layouts with more than two channels are folded down with the
/// usual -3 dB weights (centre and surrounds into both sides, LFE dropped), then scaled so
/// that a full-scale signal on every channel cannot clip.
pub fn to_stereo(mut channels: Vec<Vec<f32>>, layout: Option<&Channels>) -> Vec<Vec<f32>> {
    match channels.len() {
        0 | 2 => channels,
        1 => {
            let mono = channels.pop().expect("one channel");
            vec![mono.clone(), mono]
        }
        n => {
            let gains = downmix_gains(n, layout);
            let frames = channels[0].len();
            let norm_l: f32 = gains.iter().map(|g| g.0).sum::<f32>().max(1.0);
            let norm_r: f32 = gains.iter().map(|g| g.1).sum::<f32>().max(1.0);
            let mut left = vec![0f32; frames];
            let mut right = vec![0f32; frames];
            for (channel, (gl, gr)) in channels.iter().zip(&gains) {
                for i in 0..frames {
                    left[i] += channel[i] * gl / norm_l;
                    right[i] += channel[i] * gr / norm_r;
                }
            }
            vec![left, right]
        }
    }
}

const MINUS_3DB: f32 = std::f32::consts::FRAC_1_SQRT_2;

/// (left, right) weight of each channel, in stream order.
fn downmix_gains(n: usize, layout: Option<&Channels>) -> Vec<(f32, f32)> {
    if let Some(Channels::Positioned(positions)) = layout
        && positions.bits().count_ones() as usize == n
    {
        return positions.iter().map(position_gains).collect();
    }
    // Unknown layout: alternate channels between the sides.
    (0..n)
        .map(|i| if i % 2 == 0 { (1.0, 0.0) } else { (0.0, 1.0) })
        .collect()
}

fn position_gains(p: Position) -> (f32, f32) {
    let left = Position::FRONT_LEFT
        | Position::REAR_LEFT
        | Position::SIDE_LEFT
        | Position::FRONT_LEFT_WIDE
        | Position::FRONT_LEFT_CENTER
        | Position::TOP_FRONT_LEFT
        | Position::TOP_REAR_LEFT;
    let right = Position::FRONT_RIGHT
        | Position::REAR_RIGHT
        | Position::SIDE_RIGHT
        | Position::FRONT_RIGHT_WIDE
        | Position::FRONT_RIGHT_CENTER
        | Position::TOP_FRONT_RIGHT
        | Position::TOP_REAR_RIGHT;
    if p.intersects(Position::LFE1 | Position::LFE2) {
        (0.0, 0.0)
    } else if p.intersects(Position::FRONT_LEFT) {
        (1.0, 0.0)
    } else if p.intersects(Position::FRONT_RIGHT) {
        (0.0, 1.0)
    } else if p.intersects(left) {
        (MINUS_3DB, 0.0)
    } else if p.intersects(right) {
        (0.0, MINUS_3DB)
    } else {
        (MINUS_3DB, MINUS_3DB)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mono_becomes_dual_mono() {
        let out = to_stereo(vec![vec![0.1, -0.2, 0.3]], None);
        assert_eq!(out, vec![vec![0.1, -0.2, 0.3], vec![0.1, -0.2, 0.3]]);
    }

    #[test]
    fn stereo_is_untouched() {
        let input = vec![vec![0.5, 0.25], vec![-0.5, 0.0]];
        assert_eq!(to_stereo(input.clone(), None), input);
    }

    #[test]
    fn five_one_folds_centre_into_both_sides_and_drops_lfe() {
        let layout = Channels::Positioned(
            Position::FRONT_LEFT
                | Position::FRONT_RIGHT
                | Position::FRONT_CENTER
                | Position::LFE1
                | Position::REAR_LEFT
                | Position::REAR_RIGHT,
        );
        // Only the centre and LFE carry signal.
        let chans = vec![
            vec![0.0],
            vec![0.0],
            vec![0.8],
            vec![1.0],
            vec![0.0],
            vec![0.0],
        ];
        let out = to_stereo(chans, Some(&layout));
        assert_eq!(out.len(), 2);
        assert!(
            (out[0][0] - out[1][0]).abs() < 1e-6,
            "centre must be balanced"
        );
        assert!(out[0][0] > 0.1 && out[0][0] < 0.8);
        // LFE alone gives silence.
        let lfe_only = to_stereo(
            vec![
                vec![0.0],
                vec![0.0],
                vec![0.0],
                vec![1.0],
                vec![0.0],
                vec![0.0],
            ],
            Some(&layout),
        );
        assert_eq!(lfe_only, vec![vec![0.0], vec![0.0]]);
    }

    #[test]
    fn downmix_of_full_scale_channels_cannot_clip() {
        let chans = vec![vec![1.0; 4]; 6];
        let out = to_stereo(chans, None);
        assert!(out.iter().flatten().all(|v| v.abs() <= 1.0 + 1e-6));
    }
}
