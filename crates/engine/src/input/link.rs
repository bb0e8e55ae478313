//! YouTube links: every common address of a video (watch pages with any parameters,
//! `youtu.be`, shorts, embeds, live, music and mobile hosts, or a bare ID) reduced to the
//! video's 11-character ID, so the same video is the same job and the same cache entry.

use serde::{Deserialize, Serialize};
use url::Url;

use crate::input::intake::Refused;

/// A YouTube video ID: 11 characters from `A–Z a–z 0–9 - _`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
#[cfg_attr(feature = "ts", derive(ts_rs::TS))]
pub struct VideoId(String);

impl VideoId {
    pub const LEN: usize = 11;

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The canonical watch page, the one address every backend understands.
    pub fn watch_url(&self) -> String {
        format!("https://www.youtube.com/watch?v={}", self.0)
    }
}

impl std::fmt::Display for VideoId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for VideoId {
    type Error = LinkError;

    fn try_from(id: String) -> Result<Self, LinkError> {
        if is_video_id(&id) {
            Ok(Self(id))
        } else {
            Err(LinkError::BadVideoId { id })
        }
    }
}

impl From<VideoId> for String {
    fn from(id: VideoId) -> String {
        id.0
    }
}

/// Why a pasted piece of text is not a video Stemdeck can fetch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LinkError {
    #[error("this is not a link or a YouTube video ID")]
    NotALink,
    #[error("links to {host} are not supported; paste a YouTube video link")]
    UnsupportedSite { host: String },
    #[error("this is a playlist link; paste the links of the videos you want from it")]
    Playlist,
    #[error("this YouTube link is not a video (a channel, search or other page)")]
    NotAVideo,
    #[error(
        "{id:?} is not a YouTube video ID (those are 11 letters, digits, - or _); check that the whole link was copied"
    )]
    BadVideoId { id: String },
}

/// A link the user pasted, and the video it points to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VideoLink {
    /// Exactly as pasted, for display.
    pub text: String,
    pub id: VideoId,
}

fn is_video_id(s: &str) -> bool {
    s.len() == VideoId::LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Hosts of YouTube's pages, without `www.`, `m.` or `music.`.
const YOUTUBE_HOSTS: &[&str] = &["youtube.com", "youtube-nocookie.com"];

/// The video `text` points to.
pub fn parse_video_link(text: &str) -> Result<VideoLink, LinkError> {
    let text = text.trim();
    if is_video_id(text) {
        return Ok(VideoLink {
            text: text.to_string(),
            id: VideoId(text.to_string()),
        });
    }
    let url = parse_url(text)?;
    let host = url
        .host_str()
        .ok_or(LinkError::NotALink)?
        .to_ascii_lowercase();
    let bare_host = ["www.", "m.", "music."]
        .iter()
        .find_map(|prefix| host.strip_prefix(prefix))
        .unwrap_or(&host);
    let mut segments = url
        .path_segments()
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty());
    let id = if bare_host == "youtu.be" {
        segments.next().ok_or(LinkError::NotAVideo)?.to_string()
    } else if YOUTUBE_HOSTS.contains(&bare_host) {
        let query = |name: &str| {
            url.query_pairs()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.into_owned())
        };
        match segments.next() {
            Some("watch") => match query("v") {
                Some(v) => v,
                None if query("list").is_some() => return Err(LinkError::Playlist),
                None => return Err(LinkError::NotAVideo),
            },
            Some("shorts" | "embed" | "live" | "v" | "e") => {
                segments.next().ok_or(LinkError::NotAVideo)?.to_string()
            }
            Some("playlist") => return Err(LinkError::Playlist),
            _ => return Err(LinkError::NotAVideo),
        }
    } else {
        return Err(LinkError::UnsupportedSite { host });
    };
    let id = VideoId::try_from(id)?;
    Ok(VideoLink {
        text: text.to_string(),
        id,
    })
}

/// `text` as a URL, adding `https://` when a YouTube address was copied without it.
fn parse_url(text: &str) -> Result<Url, LinkError> {
    let lower = text.to_ascii_lowercase();
    let with_scheme = if lower.contains("://") {
        text.to_string()
    } else if ["youtube.com", "youtu.be", "youtube-nocookie.com"]
        .iter()
        .any(|host| {
            let path_start = lower.find('/').unwrap_or(lower.len());
            lower[..path_start].ends_with(host)
        })
    {
        format!("https://{text}")
    } else {
        return Err(LinkError::NotALink);
    };
    let url = Url::parse(&with_scheme).map_err(|_| LinkError::NotALink)?;
    if matches!(url.scheme(), "http" | "https") {
        Ok(url)
    } else {
        Err(LinkError::NotALink)
    }
}

/// The videos in pasted text (separated by any whitespace; the same video twice is one
/// job), and the pieces that are not videos, each with its reason.
pub fn parse_links(text: &str) -> (Vec<VideoLink>, Vec<Refused>) {
    let mut links: Vec<VideoLink> = Vec::new();
    let mut refused = Vec::new();
    for token in text.split_whitespace() {
        match parse_video_link(token) {
            Ok(link) => {
                if !links.iter().any(|l| l.id == link.id) {
                    links.push(link);
                }
            }
            Err(e) => refused.push(Refused::new(token, e.to_string())),
        }
    }
    (links, refused)
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "dQw4w9WgXcQ";

    #[test]
    fn every_common_form_of_a_video_link_gives_its_id() {
        let forms = [
            "dQw4w9WgXcQ",
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ",
            "http://youtube.com/watch?v=dQw4w9WgXcQ",
            "https://www.youtube.com/watch?feature=share&v=dQw4w9WgXcQ&ab_channel=RickAstley",
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=42s",
            "https://www.youtube.com/watch?v=dQw4w9WgXcQ&list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG&index=3",
            "https://youtu.be/dQw4w9WgXcQ",
            "https://youtu.be/dQw4w9WgXcQ?si=Ab12Cd34&t=10",
            "youtu.be/dQw4w9WgXcQ",
            "www.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://m.youtube.com/watch?v=dQw4w9WgXcQ",
            "https://music.youtube.com/watch?v=dQw4w9WgXcQ&feature=share",
            "https://www.youtube.com/shorts/dQw4w9WgXcQ",
            "https://youtube.com/shorts/dQw4w9WgXcQ?feature=share",
            "https://www.youtube.com/embed/dQw4w9WgXcQ?start=30",
            "https://www.youtube-nocookie.com/embed/dQw4w9WgXcQ",
            "https://www.youtube.com/live/dQw4w9WgXcQ?si=xyz",
            "https://www.youtube.com/v/dQw4w9WgXcQ",
            "HTTPS://WWW.YOUTUBE.COM/watch?v=dQw4w9WgXcQ",
            "  https://youtu.be/dQw4w9WgXcQ\n",
        ];
        for form in forms {
            let link = parse_video_link(form).unwrap_or_else(|e| panic!("{form}: {e}"));
            assert_eq!(link.id.as_str(), ID, "{form}");
        }
        assert_eq!(
            parse_video_link("https://youtu.be/a-b_c1D2e3F")
                .unwrap()
                .id
                .as_str(),
            "a-b_c1D2e3F"
        );
    }

    #[test]
    fn anything_else_is_refused_with_a_specific_reason() {
        let cases: &[(&str, LinkError)] = &[
            ("hello", LinkError::NotALink),
            ("notes.txt", LinkError::NotALink),
            ("ftp://youtube.com/watch?v=dQw4w9WgXcQ", LinkError::NotALink),
            (
                "https://vimeo.com/123456",
                LinkError::UnsupportedSite {
                    host: "vimeo.com".into(),
                },
            ),
            (
                "https://soundcloud.com/artist/track",
                LinkError::UnsupportedSite {
                    host: "soundcloud.com".into(),
                },
            ),
            (
                "https://www.youtube.com/playlist?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG",
                LinkError::Playlist,
            ),
            (
                "https://www.youtube.com/watch?list=PLx0sYbCqOb8TBPRdmBHs5Iftvv9TPboYG",
                LinkError::Playlist,
            ),
            (
                "https://www.youtube.com/@RickAstleyYT",
                LinkError::NotAVideo,
            ),
            (
                "https://www.youtube.com/results?search_query=x",
                LinkError::NotAVideo,
            ),
            ("https://www.youtube.com/", LinkError::NotAVideo),
            ("https://youtu.be/", LinkError::NotAVideo),
            ("https://www.youtube.com/shorts/", LinkError::NotAVideo),
            (
                "https://www.youtube.com/watch?v=dQw4w9WgXc",
                LinkError::BadVideoId {
                    id: "dQw4w9WgXc".into(),
                },
            ),
            (
                "https://youtu.be/dQw4w9WgXcQQ",
                LinkError::BadVideoId {
                    id: "dQw4w9WgXcQQ".into(),
                },
            ),
            (
                "https://www.youtube.com/watch?v=dQw4w9WgX%21Q",
                LinkError::BadVideoId {
                    id: "dQw4w9WgX!Q".into(),
                },
            ),
            ("dQw4w9WgXc", LinkError::NotALink),
            ("dQw4w9WgX!Q", LinkError::NotALink),
        ];
        for (text, expected) in cases {
            assert_eq!(parse_video_link(text).as_ref(), Err(expected), "{text}");
        }
        let playlist = parse_video_link("https://www.youtube.com/playlist?list=x").unwrap_err();
        assert!(playlist.to_string().contains("playlist"), "{playlist}");
    }

    #[test]
    fn pasted_text_becomes_one_job_per_video_and_the_rest_is_refused() {
        let (links, refused) = parse_links(
            "https://youtu.be/dQw4w9WgXcQ\n\thttps://www.youtube.com/watch?v=9bZkp7q19f0  hello \
             https://www.youtube.com/watch?v=dQw4w9WgXcQ&t=1 https://vimeo.com/1\r\nkJQP7kiw5Fk",
        );
        let ids: Vec<&str> = links.iter().map(|l| l.id.as_str()).collect();
        assert_eq!(ids, [ID, "9bZkp7q19f0", "kJQP7kiw5Fk"]);
        assert_eq!(links[0].text, "https://youtu.be/dQw4w9WgXcQ");
        let names: Vec<&str> = refused.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, ["hello", "https://vimeo.com/1"]);
        assert!(
            refused[1].reason.contains("vimeo.com"),
            "{}",
            refused[1].reason
        );
        assert!(parse_links("  \n ").0.is_empty());
    }

    #[test]
    fn ids_round_trip_through_json_and_bad_ones_are_rejected() {
        let id = parse_video_link(ID).unwrap().id;
        let json = serde_json::to_string(&id).unwrap();
        assert_eq!(json, format!("\"{ID}\""));
        assert_eq!(serde_json::from_str::<VideoId>(&json).unwrap(), id);
        assert!(serde_json::from_str::<VideoId>("\"short\"").is_err());
        assert_eq!(
            id.watch_url(),
            format!("https://www.youtube.com/watch?v={ID}")
        );
    }
}
